/* test-checkpoint.c - checkpoint round trip, content addressing, crash atomicity, verify. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/checkpoint.h"
#include "core/err.h"
#include "core/sha256.h"

static char root[256];

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof(root), "/tmp/r1-test-checkpoint-XXXXXX");
    setenv("R1_COMMIT_TIME", "1700000000", 1);
    return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "chmod -R u+w '%s' && rm -rf '%s'", root, root);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static char *read_text(const char *path)
{
    static char buf[4096];
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

static int count_objects(const char *run)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "find '%s/objects/sha256' -type f | wc -l", run);
    FILE *p = popen(cmd, "r");
    int n = -1;
    assert_non_null(p);
    assert_int_equal(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

static int dir_entries(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    assert_non_null(p);
    assert_int_equal(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

static void desc_init(struct r1_checkpoint_desc *d, const char *stage, int64_t step,
                      const char *parent)
{
    memset(d, 0, sizeof(*d));
    d->stage = stage;
    d->kind = "sft";
    d->step = step;
    d->parent = parent;
    d->recipe_hash = "abc";
    d->seed = 42;
}

/* One committed checkpoint holding a.bin = text; returns its manifest sha256 in m. */
static void commit_one(const char *run, const char *stage, int64_t step, const char *text,
                       char m[R1_SHA256_HEX])
{
    struct r1_checkpoint_desc d;
    desc_init(&d, stage, step, NULL);
    struct r1_checkpoint *ck = NULL;
    assert_int_equal(r1_checkpoint_begin(&ck, run, &d), 0);
    assert_int_equal(r1_checkpoint_add_bytes(ck, "a.bin", text, strlen(text)), 0);
    assert_int_equal(r1_checkpoint_commit(ck, NULL), 0);
    if (m)
        memcpy(m, ck->manifest_sha256, R1_SHA256_HEX);
    r1_checkpoint_free(ck);
}

static void test_round_trip(void **state)
{
    (void)state;
    char run[300], src[300], p[400];
    snprintf(run, sizeof(run), "%s/rt", root);
    snprintf(src, sizeof(src), "%s/weights.src", root);
    write_text(src, "WEIGHTS-0123456789");
    const struct r1_data_hash data[2] = {
        {"b.jsonl", "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"},
        {"a.jsonl", "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"},
    };
    struct r1_checkpoint_desc d;
    desc_init(&d, "sft", 10, NULL);
    d.data = data;
    d.n_data = 2;
    struct r1_checkpoint *ck = NULL;
    assert_int_equal(r1_checkpoint_begin(&ck, run, &d), 0);
    assert_non_null(r1_checkpoint_tmp_dir(ck));
    assert_int_equal(r1_checkpoint_add_file(ck, "model.safetensors", src), 0);
    assert_int_equal(r1_checkpoint_add_bytes(ck, "config.json", "{}\n", 3), 0);
    /* same bytes as the weights: stored once */
    assert_int_equal(r1_checkpoint_add_bytes(ck, "copy.bin", "WEIGHTS-0123456789", 18), 0);
    /* a file the caller wrote into the temp dir is moved, not copied */
    snprintf(p, sizeof(p), "%s/tokenizer.json", r1_checkpoint_tmp_dir(ck));
    write_text(p, "{\"tok\": 1}");
    assert_int_equal(r1_checkpoint_add_file(ck, "tokenizer.json", p), 0);
    assert_int_equal(r1_checkpoint_add_bytes(ck, "config.json", "x", 1), R1_EINVAL);
    assert_int_equal(r1_checkpoint_add_bytes(ck, "../evil", "x", 1), R1_EINVAL);
    assert_int_equal(r1_checkpoint_add_bytes(ck, "manifest.json", "x", 1), R1_EINVAL);
    assert_int_equal(r1_checkpoint_commit(ck, NULL), 0);
    char m1[R1_SHA256_HEX];
    memcpy(m1, ck->manifest_sha256, sizeof(m1));
    r1_checkpoint_free(ck);
    assert_string_equal(read_text(src), "WEIGHTS-0123456789"); /* caller's file untouched */
    snprintf(p, sizeof(p), "%s/latest", run);
    assert_string_equal(read_text(p), "checkpoints/sft/00000010\n");
    assert_int_equal(count_objects(run), 3);

    /* a second checkpoint of another stage shares the unchanged weights */
    desc_init(&d, "grpo", 5, m1);
    assert_int_equal(r1_checkpoint_begin(&ck, run, &d), 0);
    assert_int_equal(r1_checkpoint_add_file(ck, "model.safetensors", src), 0);
    assert_int_equal(r1_checkpoint_add_bytes(ck, "trainer_state.json", "{\"step\":5}", 10), 0);
    assert_int_equal(r1_checkpoint_commit(ck, NULL), 0);
    r1_checkpoint_free(ck);
    assert_int_equal(count_objects(run), 4);

    assert_int_equal(r1_checkpoint_latest(&ck, run, "sft"), 0);
    assert_non_null(ck);
    assert_string_equal(ck->stage, "sft");
    assert_string_equal(ck->kind, "sft");
    assert_int_equal(ck->step, 10);
    assert_null(ck->parent);
    assert_string_equal(ck->recipe_hash, "abc");
    assert_int_equal(ck->seed, 42);
    assert_int_equal(ck->n_data, 2);
    assert_string_equal(ck->manifest_sha256, m1);
    assert_int_equal(strlen(ck->commit_id), 40);
    assert_int_equal(ck->n_files, 4);
    assert_string_equal(ck->files[0].name, "config.json"); /* sorted by name */
    for (int i = 0; i < ck->n_files; i++) {
        char hex[R1_SHA256_HEX];
        uint64_t size;
        assert_int_equal(r1_sha256_file(hex, &size, ck->files[i].path), 0);
        assert_string_equal(hex, ck->files[i].sha256);
        assert_int_equal(size, ck->files[i].size);
    }
    struct stat a, b;
    assert_int_equal(stat(r1_checkpoint_file_path(ck, "model.safetensors"), &a), 0);
    assert_int_equal(stat(r1_checkpoint_file_path(ck, "copy.bin"), &b), 0);
    assert_int_equal(a.st_ino, b.st_ino); /* both links to one object */
    assert_string_equal(read_text(r1_checkpoint_file_path(ck, "tokenizer.json")), "{\"tok\": 1}");
    assert_null(r1_checkpoint_file_path(ck, "nope"));
    r1_checkpoint_free(ck);

    assert_int_equal(r1_checkpoint_latest(&ck, run, NULL), 0);
    assert_string_equal(ck->stage, "grpo");
    assert_string_equal(ck->parent, m1);
    r1_checkpoint_free(ck);
    assert_int_equal(r1_checkpoint_latest(&ck, run, "rl"), 0);
    assert_null(ck);

    struct r1_verify_report rep;
    assert_int_equal(r1_checkpoint_verify(run, &rep), 0);
    assert_int_equal(rep.n_checkpoints, 2);
    assert_int_equal(rep.n_objects, 4);

    /* one step is written once */
    desc_init(&d, "sft", 10, NULL);
    assert_int_equal(r1_checkpoint_begin(&ck, run, &d), R1_ESTATE);
    assert_non_null(strstr(r1_err_last(), "checkpoints/sft/00000010"));
}

static void test_crash_atomicity(void **state)
{
    (void)state;
    char run[300], p[700], tmpdir[400];
    snprintf(run, sizeof(run), "%s/crash", root);
    snprintf(tmpdir, sizeof(tmpdir), "%s/tmp", run);
    snprintf(p, sizeof(p), "%s/latest", run);
    commit_one(run, "s", 1, "one", NULL);
    assert_string_equal(read_text(p), "checkpoints/s/00000001\n");

    /* kill -9 while writing: a child begins, adds a file and dies without committing */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct r1_checkpoint_desc d;
        desc_init(&d, "s", 2, NULL);
        struct r1_checkpoint *ck = NULL;
        if (r1_checkpoint_begin(&ck, run, &d) ||
            r1_checkpoint_add_bytes(ck, "a.bin", "two", 3))
            _exit(3);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(dir_entries(tmpdir), 1); /* the dead writer's temp dir */
    assert_string_equal(read_text(p), "checkpoints/s/00000001\n");
    struct r1_checkpoint *ck = NULL;
    assert_int_equal(r1_checkpoint_latest(&ck, run, NULL), 0);
    assert_int_equal(ck->step, 1);
    r1_checkpoint_free(ck);
    struct r1_verify_report rep;
    assert_int_equal(r1_checkpoint_verify(run, &rep), 0);
    assert_int_equal(rep.n_checkpoints, 1);

    /* killed between the rename and the ledger commit: a final dir the ledger lacks */
    char orphan[400];
    snprintf(orphan, sizeof(orphan), "%s/checkpoints/s/00000002", run);
    assert_int_equal(mkdir(orphan, 0777), 0);
    snprintf(p, sizeof(p), "%s/manifest.json", orphan);
    write_text(p, "{half");
    assert_int_equal(r1_checkpoint_latest(&ck, run, NULL), 0);
    assert_int_equal(ck->step, 1);
    r1_checkpoint_free(ck);

    /* the next begin removes both leftovers; free() without commit removes its own */
    struct r1_checkpoint_desc d;
    desc_init(&d, "s", 2, NULL);
    assert_int_equal(r1_checkpoint_begin(&ck, run, &d), 0);
    assert_int_equal(dir_entries(tmpdir), 1);
    assert_int_not_equal(access(orphan, F_OK), 0);
    r1_checkpoint_free(ck);
    assert_int_equal(dir_entries(tmpdir), 0);

    commit_one(run, "s", 2, "two", NULL);
    snprintf(p, sizeof(p), "%s/latest", run);
    assert_string_equal(read_text(p), "checkpoints/s/00000002\n");

    /* killed between the ledger commit and `latest`: the ledger wins, begin repairs it */
    write_text(p, "checkpoints/s/00000001\n");
    assert_int_equal(r1_checkpoint_latest(&ck, run, NULL), 0);
    assert_int_equal(ck->step, 2);
    r1_checkpoint_free(ck);
    desc_init(&d, "s", 3, NULL);
    assert_int_equal(r1_checkpoint_begin(&ck, run, &d), 0);
    r1_checkpoint_free(ck);
    assert_string_equal(read_text(p), "checkpoints/s/00000002\n");
    assert_int_equal(r1_checkpoint_verify(run, &rep), 0);
    assert_int_equal(rep.n_checkpoints, 2);
}

static void test_verify_detects(void **state)
{
    (void)state;
    char run[300], p[400];
    snprintf(run, sizeof(run), "%s/verify", root);
    char m[R1_SHA256_HEX];
    commit_one(run, "s", 1, "payload", m);
    struct r1_verify_report rep;
    assert_int_equal(r1_checkpoint_verify(run, &rep), 0);
    /* the object of "payload" */
    char hex[R1_SHA256_HEX];
    assert_int_equal(r1_sha256_bytes(hex, "payload", 7), 0);
    snprintf(p, sizeof(p), "%s/objects/sha256/%.2s/%s", run, hex, hex + 2);
    assert_int_equal(chmod(p, 0644), 0);
    write_text(p, "paYload");
    assert_int_equal(r1_checkpoint_verify(run, &rep), R1_EFORMAT);
    assert_non_null(strstr(r1_err_last(), hex + 2));
    assert_non_null(strstr(r1_err_last(), "expected"));
    write_text(p, "payload");
    assert_int_equal(r1_checkpoint_verify(run, &rep), 0);
    /* the working manifest must equal the ledger's */
    snprintf(p, sizeof(p), "%s/checkpoints/s/00000001/manifest.json", run);
    char saved[4096];
    snprintf(saved, sizeof(saved), "%s", read_text(p));
    write_text(p, "{}\n");
    assert_int_equal(r1_checkpoint_verify(run, &rep), R1_EFORMAT);
    assert_non_null(strstr(r1_err_last(), "00000001/manifest.json"));
    assert_non_null(strstr(r1_err_last(), m));
    write_text(p, saved);
    assert_int_equal(r1_checkpoint_verify(run, &rep), 0);
    /* not a run directory */
    assert_int_equal(r1_checkpoint_verify(root, &rep), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "not an r1 run directory"));
}

static void test_bad_desc(void **state)
{
    (void)state;
    char run[300];
    snprintf(run, sizeof(run), "%s/bad", root);
    struct r1_checkpoint_desc d;
    struct r1_checkpoint *ck = NULL;
    desc_init(&d, "a/b", 1, NULL);
    assert_int_equal(r1_checkpoint_begin(&ck, run, &d), R1_EINVAL);
    desc_init(&d, "ok", -1, NULL);
    assert_int_equal(r1_checkpoint_begin(&ck, run, &d), R1_EINVAL);
    desc_init(&d, "ok", 1, "not-a-hash");
    assert_int_equal(r1_checkpoint_begin(&ck, run, &d), R1_EINVAL);
    assert_null(ck);
    assert_int_not_equal(access(run, F_OK), 0); /* nothing created */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_crash_atomicity),
        cmocka_unit_test(test_verify_detects),
        cmocka_unit_test(test_bad_desc),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
