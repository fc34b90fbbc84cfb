/* Command-line helpers shared by the tools (tools/aidommc, tools/aidomm). */
#ifndef AIDOMM_SUPPORT_CLI_H
#define AIDOMM_SUPPORT_CLI_H

/* argv[*i] as "--name=value" or "--name value": returns the value (advancing *i past a separate
 * value) or NULL when argv[*i] is another argument; *missing is set when "--name" is the last
 * argument and so has no value. */
const char *ad_cli_flag_value(int argc, char **argv, int *i, const char *name, int *missing);

#endif
