/* test-ledger.c - ledger commits: trailers (read back by r1 and by plain git), R1-Source
 * with a dirty recipe repository, stage tags, byte-identical ledgers under R1_COMMIT_TIME. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/checkpoint.h"
#include "core/err.h"
#include "core/ledger.h"
#include "core/sha256.h"

static char root[256];

#define HASH_A "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
#define HASH_B "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof(root), "/tmp/r1-test-ledger-XXXXXX");
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

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    assert_int_equal(system(cmd), 0);
}

/* The whole stdout of a shell command (static buffer). */
static const char *capture(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *capture(const char *fmt, ...)
{
    static char out[16384];
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    assert_int_equal(pclose(p), 0);
    return out;
}

static void entry_init(struct r1_ledger_entry *e, const char *manifest, char hex[R1_SHA256_HEX])
{
    memset(e, 0, sizeof(*e));
    assert_int_equal(r1_sha256_bytes(hex, manifest, strlen(manifest)), 0);
    e->stage = "sft";
    e->kind = "sft";
    e->step = 200;
    e->manifest = manifest;
    e->manifest_len = strlen(manifest);
    e->manifest_sha256 = hex;
    e->recipe_hash = "deadbeef";
    e->seed = 1234;
    e->summary = "sft: step 200 of 500, loss 1.234";
}

struct seen {
    int n;
    char last_id[R1_LEDGER_ID_HEX];
    char source[64];
    int n_data, forced;
    char stage[16], kind[16], parent[80];
    int64_t step;
};

static int seen_cb(const struct r1_ledger_commit *c, void *ud)
{
    struct seen *s = ud;
    s->n++;
    if (s->n > 1)
        return 0; /* only the newest */
    snprintf(s->last_id, sizeof(s->last_id), "%s", c->id);
    const char *src = r1_ledger_trailer(c, "R1-Source");
    snprintf(s->source, sizeof(s->source), "%s", src ? src : "");
    for (int i = 0; i < c->n_trailers; i++)
        s->n_data += strcmp(c->keys[i], "R1-Data") == 0;
    const char *f = r1_ledger_trailer(c, "R1-Forced");
    s->forced = f && strcmp(f, "yes") == 0;
    snprintf(s->stage, sizeof(s->stage), "%s", c->stage ? c->stage : "");
    snprintf(s->kind, sizeof(s->kind), "%s", c->kind ? c->kind : "");
    snprintf(s->parent, sizeof(s->parent), "%s", c->parent ? c->parent : "none");
    s->step = c->step;
    assert_string_equal(c->summary, "sft: step 200 of 500, loss 1.234");
    assert_string_equal(r1_ledger_trailer(c, "R1-Seed"), "1234");
    assert_string_equal(r1_ledger_trailer(c, "R1-Recipe-Hash"), "deadbeef");
    assert_string_equal(r1_ledger_trailer(c, "R1-Version"), R1_VERSION);
    assert_string_equal(r1_ledger_trailer(c, "R1-Data"), "a.jsonl " HASH_A);
    assert_int_equal(c->time, 1700000000);
    return 0;
}

static void test_trailers_and_plain_git(void **state)
{
    (void)state;
    char run[300], repo[300], recipe[400];
    snprintf(run, sizeof(run), "%s/run", root);
    snprintf(repo, sizeof(repo), "%s/src", root);
    snprintf(recipe, sizeof(recipe), "%s/recipes/r.yaml", repo);
    /* the recipe lives in a git repository with one commit */
    sh("git init -q '%s' && mkdir '%s/recipes' && echo 'name: t' > '%s' && "
       "git -C '%s' add . && git -C '%s' -c user.name=t -c user.email=t@t commit -qm init",
       repo, repo, recipe, repo, repo);
    char head[64];
    snprintf(head, sizeof(head), "%s", capture("git -C '%s' rev-parse HEAD", repo));
    head[strcspn(head, "\n")] = '\0';

    struct r1_ledger *lg = NULL;
    assert_int_equal(r1_ledger_open_or_init(&lg, run), 0);
    const struct r1_data_hash data[2] = {{"a.jsonl", HASH_A}, {"b.jsonl", HASH_B}};
    struct r1_ledger_entry e;
    char mhex[R1_SHA256_HEX];
    entry_init(&e, "{\"m\": 1}\n", mhex);
    e.data = data;
    e.n_data = 2;
    e.recipe_path = recipe;
    e.recipe_lock = "name: t\n";
    e.recipe_lock_len = 8;
    e.metrics = "{\"stage\":\"sft\",\"step\":200,\"loss\":1.234}\n";
    e.metrics_len = strlen(e.metrics);
    char id1[R1_LEDGER_ID_HEX];
    assert_int_equal(r1_ledger_commit_checkpoint(lg, &e, id1), 0);

    struct seen s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(r1_ledger_walk(lg, 0, seen_cb, &s), 0);
    assert_int_equal(s.n, 2); /* the root commit and this one */
    assert_string_equal(s.last_id, id1);
    assert_string_equal(s.stage, "sft");
    assert_string_equal(s.kind, "sft");
    assert_int_equal(s.step, 200);
    assert_string_equal(s.parent, "none");
    assert_int_equal(s.n_data, 2);
    assert_int_equal(s.forced, 0);
    assert_string_equal(s.source, head); /* clean */

    /* the tree holds the manifest, the recipe lock and the metrics */
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(r1_ledger_read_file(lg, id1, "checkpoints/sft/00000200/manifest.json", &buf,
                                         &len),
                     0);
    assert_string_equal(buf, "{\"m\": 1}\n");
    free(buf);
    assert_int_equal(r1_ledger_read_file(lg, id1, "recipe.lock.yaml", &buf, &len), 0);
    assert_string_equal(buf, "name: t\n");
    free(buf);
    assert_int_equal(r1_ledger_read_file(lg, id1, "nope.txt", &buf, &len), R1_EFORMAT);

    /* second commit: the recipe file has uncommitted changes; forced; a parent */
    sh("echo 'seed: 2' >> '%s'", recipe);
    char m2[R1_SHA256_HEX];
    entry_init(&e, "{\"m\": 2}\n", m2);
    e.step = 400;
    e.parent = mhex;
    e.data = data;
    e.n_data = 1;
    e.recipe_path = recipe;
    e.forced = 1;
    char id2[R1_LEDGER_ID_HEX];
    assert_int_equal(r1_ledger_commit_checkpoint(lg, &e, id2), 0);
    memset(&s, 0, sizeof(s));
    assert_int_equal(r1_ledger_walk(lg, 0, seen_cb, &s), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.last_id, id2);
    assert_string_equal(s.parent, mhex);
    assert_int_equal(s.forced, 1);
    char dirty[80];
    snprintf(dirty, sizeof(dirty), "%s-dirty", head);
    assert_string_equal(s.source, dirty);
    /* both manifests are in HEAD's tree */
    assert_int_equal(r1_ledger_has_path(lg, "checkpoints/sft/00000200/manifest.json"), 1);
    assert_int_equal(r1_ledger_has_path(lg, "checkpoints/sft/00000400/manifest.json"), 1);

    assert_int_equal(r1_ledger_tag_stage(lg, "sft"), 0);
    assert_int_equal(r1_ledger_tag_stage(lg, "sft"), 0); /* again at HEAD: fine */
    assert_int_equal(r1_ledger_tag_stage(lg, "bad/name"), R1_EINVAL);
    r1_ledger_free(lg);

    /* plain git reads the same history */
    const char *log = capture("git -C '%s' log --format=%%B", run);
    assert_non_null(strstr(log, "sft: step 200 of 500, loss 1.234\n\nR1-Stage: sft\n"));
    assert_non_null(strstr(log, "R1-Step: 400\nR1-Parent: "));
    assert_non_null(strstr(log, "R1-Data: a.jsonl " HASH_A "\nR1-Data: b.jsonl " HASH_B));
    assert_non_null(strstr(log, "R1-Recipe-Hash: deadbeef\n"));
    assert_non_null(strstr(log, "R1-Seed: 1234\n"));
    assert_non_null(strstr(log, "R1-Version: " R1_VERSION "\n"));
    assert_non_null(strstr(log, dirty));
    assert_non_null(strstr(log, "R1-Forced: yes\n"));
    assert_non_null(strstr(log, "R1-Kind: sft\n"));
    assert_string_equal(capture("git -C '%s' tag", run), "stage/sft\n");
    assert_string_equal(capture("git -C '%s' log -1 --format=%%an%%x20%%ae stage/sft", run),
                        "r1 r1@localhost\n");
    /* git's own trailer parser agrees */
    assert_string_equal(
        capture("git -C '%s' log -1 --format='%%(trailers:key=R1-Step,valueonly)'", run),
        "400\n\n");
}

static void test_no_source_outside_git(void **state)
{
    (void)state;
    char dir[300], recipe[400], out[64];
    snprintf(dir, sizeof(dir), "%s/loose", root);
    snprintf(recipe, sizeof(recipe), "%s/r.yaml", dir);
    sh("mkdir -p '%s' && echo 'name: t' > '%s'", dir, recipe);
    if (system("git -C /tmp rev-parse >/dev/null 2>&1") == 0)
        skip(); /* /tmp itself is inside a repository on this machine */
    assert_int_equal(r1_ledger_source(out, recipe), 0);
    assert_string_equal(out, "");
    assert_int_equal(r1_ledger_source(out, "/nonexistent/r.yaml"), R1_EIO);
}

/* Two runs with the same inputs and R1_COMMIT_TIME give the same commit ids. */
static void make_run(const char *run, char id[R1_LEDGER_ID_HEX])
{
    for (int step = 1; step <= 2; step++) {
        struct r1_checkpoint_desc d = {.stage = "pre", .kind = "pretrain", .step = step,
                                       .seed = 9};
        struct r1_checkpoint *ck = NULL;
        assert_int_equal(r1_checkpoint_begin(&ck, run, &d), 0);
        assert_int_equal(r1_checkpoint_add_bytes(ck, "model.safetensors", "w", 1), 0);
        struct r1_checkpoint_commit_info info = {.summary = "pre: step", .metrics = "{}\n",
                                                 .metrics_len = 3};
        assert_int_equal(r1_checkpoint_commit(ck, &info), 0);
        memcpy(id, ck->commit_id, R1_LEDGER_ID_HEX);
        r1_checkpoint_free(ck);
    }
}

static void test_deterministic_ids(void **state)
{
    (void)state;
    char a[300], b[300], ida[R1_LEDGER_ID_HEX], idb[R1_LEDGER_ID_HEX];
    snprintf(a, sizeof(a), "%s/det-a", root);
    snprintf(b, sizeof(b), "%s/det-b", root);
    make_run(a, ida);
    make_run(b, idb);
    assert_int_equal(strlen(ida), 40);
    assert_string_equal(ida, idb);
    char head[64];
    snprintf(head, sizeof(head), "%s", capture("git -C '%s' rev-parse HEAD", b));
    head[strcspn(head, "\n")] = '\0';
    assert_string_equal(head, ida);
    /* the index matches HEAD and .gitignore hides objects/, tmp/, latest and the links:
     * git status names nothing under checkpoints/ (metrics.jsonl is the pipeline's file) */
    const char *st = capture("git -C '%s' status --porcelain --untracked-files=all", b);
    assert_null(strstr(st, "checkpoints/"));
    assert_null(strstr(st, "objects/"));
    assert_null(strstr(st, "latest"));

    setenv("R1_COMMIT_TIME", "yesterday", 1);
    struct r1_checkpoint_desc d = {.stage = "pre", .kind = "pretrain", .step = 3};
    struct r1_checkpoint *ck = NULL;
    assert_int_equal(r1_checkpoint_begin(&ck, a, &d), 0);
    assert_int_equal(r1_checkpoint_commit(ck, NULL), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "R1_COMMIT_TIME"));
    r1_checkpoint_free(ck);
    setenv("R1_COMMIT_TIME", "1700000000", 1);
    struct r1_verify_report rep;
    assert_int_equal(r1_checkpoint_verify(a, &rep), 0); /* the failed commit left nothing */
    assert_int_equal(rep.n_checkpoints, 2);
}

static void test_not_a_run(void **state)
{
    (void)state;
    char plain[300], repo[300];
    snprintf(plain, sizeof(plain), "%s/plain", root);
    snprintf(repo, sizeof(repo), "%s/foreign", root);
    sh("mkdir -p '%s' && git init -q '%s' && git -C '%s' -c user.name=t -c user.email=t@t "
       "commit -q --allow-empty -m x",
       plain, repo, repo);
    struct r1_ledger *lg = NULL;
    assert_int_equal(r1_ledger_open(&lg, plain), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "not an r1 run directory"));
    assert_int_equal(r1_ledger_open(&lg, repo), R1_EINVAL);
    assert_int_equal(r1_ledger_open_or_init(&lg, repo), R1_EINVAL);
    assert_null(lg);

    char run[300];
    snprintf(run, sizeof(run), "%s/badentry", root);
    assert_int_equal(r1_ledger_open_or_init(&lg, run), 0);
    struct r1_ledger_entry e;
    char hex[R1_SHA256_HEX];
    entry_init(&e, "{}", hex);
    e.summary = "two\nlines";
    assert_int_equal(r1_ledger_commit_checkpoint(lg, &e, NULL), R1_EINVAL);
    entry_init(&e, "{}", hex);
    e.parent = "short";
    assert_int_equal(r1_ledger_commit_checkpoint(lg, &e, NULL), R1_EINVAL);
    r1_ledger_free(lg);
    /* reopening an existing run works */
    assert_int_equal(r1_ledger_open(&lg, run), 0);
    r1_ledger_free(lg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trailers_and_plain_git),
        cmocka_unit_test(test_no_source_outside_git),
        cmocka_unit_test(test_deterministic_ids),
        cmocka_unit_test(test_not_a_run),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
