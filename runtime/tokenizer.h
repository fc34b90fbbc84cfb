/* Runtime tokenizers for the three backbone modalities, byte-exact with the peers' own code
 * (modelgenerator.md §5.2-§5.4; goldens in tests/golden/tokenizers/, written by
 * tools/golden/tokenizer_goldens.py):
 *
 *   RT_TOK_KIND_DNA_ONEHOT  Enformer's str_to_one_hot: one 256-entry byte table, A/a C/c G/g
 *                           T/t -> one-hot, '.' -> 0.25 everywhere, every other byte (N, U,
 *                           IUPAC, whitespace, UTF-8 continuation bytes...) -> all zeros. One
 *                           position per BYTE (the peer reads the UTF-8 bytes). No specials,
 *                           no padding: the peer stacks rows, so all rows must be equally long.
 *   RT_TOK_KIND_RNABERT     AIDO.RNA RNABertTokenizer(version="v2"), 16-token vocab:
 *                           [CLS] s [SEP], pad 0.
 *   RT_TOK_KIND_ESM2        transformers.EsmTokenizer over the 33-token ESM2 vocab:
 *                           <cls> s <eos>, pad 1.
 *
 * The two id tokenizers are the same algorithm over different vocabularies, ported from
 * transformers 4.38 PreTrainedTokenizer.tokenize: every vocab entry is a no-split token, so the
 * text (as Unicode code points) is first cut by transformers' Trie.split (reproduced statement
 * by statement, lookahead quirks included: e.g. "AC[MASKGU" gives A C [UNK] A [UNK] G U for
 * RNABert because the abandoned "[MASK" match swallows "[M" and "SK"); each remaining piece is
 * split on Python's str.split() whitespace (the Unicode White_Space set, so ' ', '\t', '\n',
 * U+00A0, U+3000, ... vanish) and every word is looked up whole in the vocab, else unk. Hence
 * case matters ("acgu" is one [UNK]; "mkv" is one <unk>), runs of unknown characters collapse to
 * one unk, and written specials ("<mask>", "[MASK]") map to their ids.
 *
 * Input strings are byte ranges (not NUL-terminated; NUL bytes are ordinary characters). Bytes
 * that are not valid UTF-8 cannot reach the peer (Python str); here each such byte is one
 * non-whitespace, non-vocab character, so it lands in an unk word like any unknown character.
 *
 * Batching follows the peers' collation: tokenizer(seqs, truncation=max_length given,
 * padding=True, max_length=max_length): each row is truncated to max_length tokens including
 * the two specials (the first max_length-2 content tokens, then eos/sep), then all rows are
 * right-padded with the pad id to the batch's longest row (not to max_length). */
#ifndef AIDOMM_RUNTIME_TOKENIZER_H
#define AIDOMM_RUNTIME_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "ir/ir.h"
#include "support/status.h"

typedef enum rt_tok_kind {
  RT_TOK_KIND_DNA_ONEHOT = 0,
  RT_TOK_KIND_RNABERT,
  RT_TOK_KIND_ESM2,
  RT_TOK_KIND_COUNT
} rt_tok_kind_t;

/* One input string: len bytes at data (data may be NULL when len is 0). */
typedef struct rt_tok_str {
  const char *data;
  size_t len;
} rt_tok_str_t;

/* Vocabulary facts of an id tokenizer (-1 where the kind has no such token). */
typedef struct rt_tok_info {
  const char *name; /* "str_to_one_hot", "rnabert", "esm" */
  int64_t vocab_size;
  int64_t pad_id, cls_id, eos_id, unk_id, mask_id; /* eos_id is [SEP] for RNABert */
} rt_tok_info_t;

/* Encoded id batch. ids and mask are [batch, len], row-major; mask is 1 on real tokens (specials
 * included) and 0 on padding. The mask is u8 so one buffer serves every model dtype: convert with
 * rt_tok_mask_convert when a float mask is wanted. */
typedef struct rt_tok_batch {
  int64_t batch, len;
  int64_t *ids;  /* [batch, len] */
  uint8_t *mask; /* [batch, len] */
} rt_tok_batch_t;

const char *rt_tok_kind_name(rt_tok_kind_t kind);
/* NULL for an out-of-range kind. For DNA only name and vocab_size (4) are meaningful. */
const rt_tok_info_t *rt_tok_info(rt_tok_kind_t kind);

/* Id of one vocabulary token spelled exactly (e.g. "<mask>", "A"), or -1 when not in the vocab
 * of an id tokenizer. */
int64_t rt_tok_token_id(rt_tok_kind_t kind, const char *token, size_t len);

/* Tokenizes n >= 1 strings with an id tokenizer (RNABERT or ESM2). max_length <= 0 means no
 * truncation; otherwise it must be >= 2 (room for the two specials). On success *out owns its
 * buffers (free with rt_tok_batch_free); on error *out is left empty. Errors: INVALID_ARGUMENT
 * for an empty batch, a DNA kind, a NULL string with nonzero length, or max_length 1;
 * RESOURCE when memory runs out. */
ad_status_t rt_tok_encode(rt_tok_kind_t kind, const rt_tok_str_t *strs, size_t n,
                          int64_t max_length, rt_tok_batch_t *out);
void rt_tok_batch_free(rt_tok_batch_t *b);

/* mask [count] (0/1) -> dst [count] as f32 or f64 0.0/1.0. INVALID_ARGUMENT for other dtypes. */
ad_status_t rt_tok_mask_convert(const uint8_t *mask, size_t count, ir_dtype_t dtype, void *dst);

/* DNA one-hot of n >= 1 strings into a malloc'd [n, L, 4] buffer of dtype (f32 or f64), L the
 * byte length shared by all rows (0 is allowed: an empty window). *out_onehot is NULL and *out_len
 * 0 on error. INVALID_ARGUMENT for an empty batch, another dtype, or rows of different lengths
 * (naming the first row whose length differs from row 0, as the peer's torch.stack cannot batch
 * them). */
ad_status_t rt_tok_dna_onehot(const rt_tok_str_t *strs, size_t n, ir_dtype_t dtype,
                              void **out_onehot, int64_t *out_len);

#endif
