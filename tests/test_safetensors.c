/* The safetensors reader and writer: a round trip of every dtype through the atomic writer,
 * a file written by Python's safetensors, realignment of a misaligned file, the writer's
 * argument checks, and corrupt files (each must fail with DATA_LOSS naming the file and the
 * problem), plus truncations and byte flips of a valid file that must never crash. */
#include <check.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/test_util.h"
#include "runtime/safetensors.h"
#include "tests/support/golden.h"


static int count_dir_entries(void) {
  DIR *d = opendir(tu_tmpdir());
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n;
}

static char *dir_path(const char *name) {
  char *p = malloc(strlen(tu_tmpdir()) + strlen(name) + 2);
  sprintf(p, "%s/%s", tu_tmpdir(), name);
  return p;
}

/* Writes an 8-byte length (or `len_override` when nonzero), the header text and data bytes. */
static char *write_raw(const char *name, const char *header, uint64_t len_override,
                       const void *data, size_t ndata) {
  char *p = dir_path(name);
  FILE *f = fopen(p, "wb");
  ck_assert_ptr_nonnull(f);
  uint64_t n = len_override ? len_override : strlen(header);
  uint8_t le[8];
  for (int i = 0; i < 8; i++) le[i] = (uint8_t)(n >> (8 * i));
  fwrite(le, 1, 8, f);
  fwrite(header, 1, strlen(header), f);
  if (ndata) fwrite(data, 1, ndata, f);
  fclose(f);
  return p;
}

START_TEST(test_round_trip_all_dtypes) {
  tu_tmpdir_create("st");
  double f64[4] = {1.5, -2.25, 1e300, -0.0};
  float f32[6] = {1, 2, 3, 4, 5, -6.5f};
  uint16_t bf16[4] = {0x3f80, 0xc000, 0x7f80, 0x0001};
  uint16_t f16[2] = {0x3c00, 0xfbff};
  int64_t i64 = -1234567890123ll;
  int32_t i32[5] = {1, -2, 3, -4, 5};
  uint8_t u8[3] = {0, 127, 255};
  uint8_t b[3] = {1, 0, 1};
  rt_st_tensor_t ts[] = {
      {.name = "z.f64", .dtype = RT_ST_F64, .rank = 1, .shape = {4}, .data = f64},
      {.name = "a.weight", .dtype = RT_ST_F32, .rank = 2, .shape = {2, 3}, .data = f32},
      {.name = "bf", .dtype = RT_ST_BF16, .rank = 2, .shape = {2, 2}, .data = bf16},
      {.name = "half", .dtype = RT_ST_F16, .rank = 1, .shape = {2}, .data = f16},
      {.name = "step", .dtype = RT_ST_I64, .rank = 0, .data = &i64},
      {.name = "ids", .dtype = RT_ST_I32, .rank = 1, .shape = {5}, .data = i32},
      {.name = "bytes", .dtype = RT_ST_U8, .rank = 1, .shape = {3}, .data = u8},
      {.name = "mask", .dtype = RT_ST_BOOL, .rank = 1, .shape = {3}, .data = b},
      {.name = "empty", .dtype = RT_ST_F32, .rank = 2, .shape = {0, 7}, .data = NULL},
  };
  size_t nt = sizeof ts / sizeof ts[0];
  rt_st_kv_t meta[] = {{"format", "pt"}, {"note", "r\xc3\xa9sum\xc3\xa9 \"quoted\""}};
  char *p = dir_path("rt.safetensors");
  ck_assert_ptr_null(rt_st_write(p, ts, nt, meta, 2));
  ck_assert_int_eq(count_dir_entries(), 1); /* no temp file left behind */

  rt_st_file_t *f = NULL;
  ad_status_t st = rt_st_open(p, &f);
  ck_assert_msg(st == NULL, "%s", st ? ad_status_message(st) : "");
  ck_assert_uint_eq(rt_st_count(f), nt);
  for (size_t i = 1; i < rt_st_count(f); i++)
    ck_assert_int_lt(strcmp(rt_st_at(f, i - 1)->name, rt_st_at(f, i)->name), 0);
  for (size_t k = 0; k < nt; k++) {
    const rt_st_tensor_t *t = rt_st_find(f, ts[k].name);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, ts[k].dtype);
    ck_assert_int_eq(t->rank, ts[k].rank);
    for (int d = 0; d < t->rank; d++) ck_assert_int_eq(t->shape[d], ts[k].shape[d]);
    size_t nb = (size_t)rt_st_numel(&ts[k]) * rt_st_dtype_size(ts[k].dtype);
    ck_assert_uint_eq(t->nbytes, nb);
    if (nb) {
      ck_assert_int_eq(memcmp(t->data, ts[k].data, nb), 0);
      ck_assert_uint_eq((uintptr_t)t->data % rt_st_dtype_size(t->dtype), 0);
    }
  }
  ck_assert_ptr_null(rt_st_find(f, "missing"));
  ck_assert_ptr_null(rt_st_find(f, "__metadata__"));
  ck_assert_str_eq(rt_st_metadata(f, "format"), "pt");
  ck_assert_str_eq(rt_st_metadata(f, "note"), meta[1].value);
  ck_assert_ptr_null(rt_st_metadata(f, "absent"));
  ck_assert_uint_eq(rt_st_metadata_count(f), 2);
  ck_assert_str_eq(rt_st_metadata_at(f, 0)->key, "format");
  ir_tensor_t view;
  ck_assert(rt_st_as_ir_tensor(rt_st_find(f, "a.weight"), &view));
  ck_assert_int_eq(view.dtype, IR_DTYPE_F32);
  ck_assert_int_eq(view.dims[1], 3);
  ck_assert(!rt_st_as_ir_tensor(rt_st_find(f, "mask"), &view)); /* BOOL has no IR dtype */
  rt_st_close(f);

  /* Overwriting replaces the file atomically and still leaves no temp file. */
  ck_assert_ptr_null(rt_st_write(p, ts, 2, NULL, 0));
  ck_assert_int_eq(count_dir_entries(), 1);
  ck_assert_ptr_null(rt_st_open(p, &f));
  ck_assert_uint_eq(rt_st_count(f), 2);
  ck_assert_uint_eq(rt_st_metadata_count(f), 0);
  rt_st_close(f);
  free(p);
  tu_tmpdir_remove();
}
END_TEST

START_TEST(test_reads_python_written_file) {
  /* tests/golden/ops_train.safetensors was written by Python's safetensors 0.4.5. */
  char *p = golden_path("tests/golden/ops_train.safetensors");
  rt_st_file_t *f = NULL;
  ad_status_t st = rt_st_open(p, &f);
  ck_assert_msg(st == NULL, "%s", st ? ad_status_message(st) : "");
  ck_assert_ptr_nonnull(rt_st_metadata(f, "cases"));
  ck_assert_str_eq(rt_st_metadata(f, "safetensors"), "0.4.5");
  const rt_st_tensor_t *t = rt_st_find(f, "mse_2d_f64/in0");
  ck_assert_ptr_nonnull(t);
  ck_assert_int_eq(t->dtype, RT_ST_F64);
  ck_assert_int_eq(t->rank, 2);
  ck_assert_int_eq(t->shape[0], 3);
  ck_assert_int_eq(t->shape[1], 5);
  rt_st_close(f);
  free(p);
}
END_TEST

START_TEST(test_misaligned_file_is_realigned) {
  tu_tmpdir_create("st");
  double v[2] = {3.25, -7.5};
  /* Header of 61 bytes: the data area starts at offset 69, misaligned for f64. */
  const char *hdr = "{\"x\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}}    ";
  ck_assert_uint_ne((8 + strlen(hdr)) % 8, 0);
  char *p = write_raw("mis.safetensors", hdr, 0, v, sizeof v);
  rt_st_file_t *f = NULL;
  ck_assert_ptr_null(rt_st_open(p, &f));
  const rt_st_tensor_t *t = rt_st_find(f, "x");
  ck_assert_uint_eq((uintptr_t)t->data % 8, 0);
  ck_assert(((const double *)t->data)[0] == 3.25 && ((const double *)t->data)[1] == -7.5);
  rt_st_close(f);
  free(p);
  tu_tmpdir_remove();
}
END_TEST

START_TEST(test_writer_rejects_bad_arguments) {
  tu_tmpdir_create("st");
  float x[2] = {1, 2};
  char *p = dir_path("w.safetensors");
  rt_st_tensor_t dup[2] = {{.name = "a", .dtype = RT_ST_F32, .rank = 1, .shape = {2}, .data = x},
                           {.name = "a", .dtype = RT_ST_F32, .rank = 1, .shape = {1}, .data = x}};
  ad_status_t st = rt_st_write(p, dup, 2, NULL, 0);
  ck_assert_int_eq(ad_status_code(st), AD_STATUS_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(ad_status_message(st), "duplicate"));
  ad_status_free(st);
  rt_st_tensor_t neg = {.name = "n", .dtype = RT_ST_F32, .rank = 1, .shape = {-2}, .data = x};
  st = rt_st_write(p, &neg, 1, NULL, 0);
  ck_assert_int_eq(ad_status_code(st), AD_STATUS_INVALID_ARGUMENT);
  ad_status_free(st);
  rt_st_tensor_t meta = {
      .name = "__metadata__", .dtype = RT_ST_F32, .rank = 1, .shape = {2}, .data = x};
  st = rt_st_write(p, &meta, 1, NULL, 0);
  ck_assert_int_eq(ad_status_code(st), AD_STATUS_INVALID_ARGUMENT);
  ad_status_free(st);
  rt_st_kv_t kv[2] = {{"k", "1"}, {"k", "2"}};
  st = rt_st_write(p, NULL, 0, kv, 2);
  ck_assert_int_eq(ad_status_code(st), AD_STATUS_INVALID_ARGUMENT);
  ad_status_free(st);
  ck_assert_int_eq(count_dir_entries(), 0); /* nothing written on failure */
  st = rt_st_write("/nonexistent-dir-aidomm/x.safetensors", dup, 1, NULL, 0);
  ck_assert_int_eq(ad_status_code(st), AD_STATUS_IO);
  ck_assert_ptr_nonnull(strstr(ad_status_message(st), "/nonexistent-dir-aidomm/x.safetensors"));
  ad_status_free(st);
  /* An empty file set is valid. */
  ck_assert_ptr_null(rt_st_write(p, NULL, 0, NULL, 0));
  rt_st_file_t *f = NULL;
  ck_assert_ptr_null(rt_st_open(p, &f));
  ck_assert_uint_eq(rt_st_count(f), 0);
  rt_st_close(f);
  free(p);
  tu_tmpdir_remove();
}
END_TEST

typedef struct corrupt_case {
  const char *name;
  const char *header;
  uint64_t len_override; /* 0: the header's length */
  size_t ndata;          /* zero bytes of data area */
  const char *expect;    /* substring of the message */
} corrupt_case_t;

#define T1 "\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"

static const corrupt_case_t kCorrupt[] = {
    {"header_len_past_eof", "{}", 1000, 0, "past end of file"},
    {"not_json", "{not json}", 0, 0, "not valid JSON"},
    {"truncated_json", "{\"t\":{\"dtype\":\"F32\"", 0, 0, "not valid JSON"},
    {"not_object", "[1,2,3]", 0, 0, "JSON object"},
    {"unknown_dtype", "{\"t\":{\"dtype\":\"F8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 0, 2,
     "unknown dtype 'F8'"},
    {"negative_dim", "{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 0, 8,
     "negative"},
    {"fractional_dim", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 0, 8,
     "not an integer"},
    {"offsets_out_of_range", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0,
     4, "out of range"},
    {"size_mismatch", "{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 0, 8,
     "size mismatch"},
    {"overlap", "{" T1 ",\"u\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 0, 8,
     "overlap"},
    {"gap", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 0, 8,
     "unused bytes"},
    {"trailing_bytes", "{" T1 "}", 0, 12, "trailing bytes"},
    {"duplicate_key", "{" T1 "," T1 "}", 0, 8, "not valid JSON"},
    {"missing_field", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2]}}", 0, 8,
     "missing field 'data_offsets'"},
    {"unknown_field", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 0,
     8, "unknown field 'x'"},
    {"reversed_offsets", "{\"t\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 0, 8,
     "bad data_offsets"},
    {"metadata_not_string", "{\"__metadata__\":{\"a\":1}," T1 "}", 0, 8, "not a string"},
    {"huge_shape",
     "{\"t\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 0, 8,
     "overflows"},
};

START_TEST(test_corrupt_files_rejected) {
  tu_tmpdir_create("st");
  uint8_t zeros[64] = {0};
  for (size_t k = 0; k < sizeof kCorrupt / sizeof kCorrupt[0]; k++) {
    const corrupt_case_t *c = &kCorrupt[k];
    char fname[96];
    snprintf(fname, sizeof fname, "%s.safetensors", c->name);
    char *p = write_raw(fname, c->header, c->len_override, zeros, c->ndata);
    rt_st_file_t *f = NULL;
    ad_status_t st = rt_st_open(p, &f);
    ck_assert_msg(st != NULL, "%s: accepted", c->name);
    ck_assert_ptr_null(f);
    ck_assert_msg(ad_status_code(st) == AD_STATUS_DATA_LOSS, "%s: code %d (%s)", c->name,
                  ad_status_code(st), ad_status_message(st));
    ck_assert_msg(strstr(ad_status_message(st), p) != NULL, "%s: message lacks the path: %s",
                  c->name, ad_status_message(st));
    ck_assert_msg(strstr(ad_status_message(st), c->expect) != NULL, "%s: message '%s' lacks '%s'",
                  c->name, ad_status_message(st), c->expect);
    ad_status_free(st);
    free(p);
  }
  /* Shorter than the 8-byte length itself, and empty. */
  const char *shorts[2] = {"short.safetensors", "empty.safetensors"};
  size_t lens[2] = {5, 0};
  for (int k = 0; k < 2; k++) {
    char *p = dir_path(shorts[k]);
    FILE *fp = fopen(p, "wb");
    fwrite(zeros, 1, lens[k], fp);
    fclose(fp);
    rt_st_file_t *f = NULL;
    ad_status_t st = rt_st_open(p, &f);
    ck_assert_int_eq(ad_status_code(st), AD_STATUS_DATA_LOSS);
    ck_assert_ptr_nonnull(strstr(ad_status_message(st), p));
    ck_assert_ptr_nonnull(strstr(ad_status_message(st), "too short"));
    ad_status_free(st);
    free(p);
  }
  /* A missing file is an I/O error, not corruption. */
  char *p = dir_path("absent.safetensors");
  rt_st_file_t *f = NULL;
  ad_status_t st = rt_st_open(p, &f);
  ck_assert_int_eq(ad_status_code(st), AD_STATUS_IO);
  ad_status_free(st);
  free(p);
  tu_tmpdir_remove();
}
END_TEST

/* Every truncation and many single-byte corruptions of a valid file either open cleanly or
 * fail with a status; none may crash (run under ASan for the full force of this). */
START_TEST(test_truncations_and_flips_never_crash) {
  tu_tmpdir_create("st");
  float a[3] = {1, 2, 3};
  int64_t b[2] = {4, 5};
  rt_st_tensor_t ts[2] = {{.name = "a", .dtype = RT_ST_F32, .rank = 1, .shape = {3}, .data = a},
                          {.name = "b", .dtype = RT_ST_I64, .rank = 2, .shape = {1, 2}, .data = b}};
  rt_st_kv_t kv = {"k", "v"};
  char *p = dir_path("ok.safetensors");
  ck_assert_ptr_null(rt_st_write(p, ts, 2, &kv, 1));
  FILE *fp = fopen(p, "rb");
  uint8_t buf[1024];
  size_t len = fread(buf, 1, sizeof buf, fp);
  fclose(fp);
  ck_assert_uint_lt(len, sizeof buf);
  int ok = 0, rejected = 0;
  for (size_t n = 0; n < len; n++) {
    rt_st_file_t *f = NULL;
    ad_status_t st = rt_st_open_memory(buf, n, "trunc", &f);
    ck_assert_msg(st != NULL, "truncation to %zu bytes accepted", n);
    ck_assert_int_eq(ad_status_code(st), AD_STATUS_DATA_LOSS);
    ad_status_free(st);
  }
  static const uint8_t kFlips[] = {0x00, 0x01, 0x22, 0x2c, 0x30, 0x39,
                                   0x5b, 0x5d, 0x7b, 0x7d, 0xff};
  uint8_t copy[1024];
  for (size_t pos = 0; pos < len; pos++)
    for (size_t k = 0; k < sizeof kFlips; k++) {
      memcpy(copy, buf, len);
      copy[pos] = kFlips[k];
      rt_st_file_t *f = NULL;
      ad_status_t st = rt_st_open_memory(copy, len, "flip", &f);
      if (st) {
        ck_assert(ad_status_code(st) == AD_STATUS_DATA_LOSS ||
                  ad_status_code(st) == AD_STATUS_UNIMPLEMENTED);
        ad_status_free(st);
        rejected++;
      } else {
        for (size_t i = 0; i < rt_st_count(f); i++) {
          const rt_st_tensor_t *t = rt_st_at(f, i);
          volatile uint8_t sink = 0;
          for (size_t j = 0; j < t->nbytes; j++) sink ^= ((const uint8_t *)t->data)[j];
          (void)sink;
        }
        rt_st_close(f);
        ok++;
      }
    }
  ck_assert_int_gt(rejected, 0);
  ck_assert_int_gt(ok, 0); /* data-area flips stay valid */
  free(p);
  tu_tmpdir_remove();
}
END_TEST

int main(void) {
  Suite *s = suite_create("safetensors");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_round_trip_all_dtypes);
  tcase_add_test(tc, test_reads_python_written_file);
  tcase_add_test(tc, test_misaligned_file_is_realigned);
  tcase_add_test(tc, test_writer_rejects_bad_arguments);
  tcase_add_test(tc, test_corrupt_files_rejected);
  tcase_add_test(tc, test_truncations_and_flips_never_crash);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
