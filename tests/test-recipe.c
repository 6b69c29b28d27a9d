/* test-recipe.c - recipes: defaults filled, extends, --set, canonical hash, show round trip,
 * and every problem reported at once.  Recipes live in tests/recipes (R1_SRC names the
 * source root). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/err.h"
#include "core/recipe.h"

static char dir[4096];

static const char *recipe_path(const char *name)
{
    static char buf[4200];
    snprintf(buf, sizeof(buf), "%s/%s", dir, name);
    return buf;
}

static struct r1_recipe *load_ok(const char *name, const char *const *sets, int n_sets)
{
    struct r1_recipe *r = NULL;
    struct r1_recipe_diag d = {0};
    int rc = r1_recipe_load(&r, recipe_path(name), sets, n_sets, &d);
    for (int i = 0; i < d.n; i++)
        fprintf(stderr, "%s\n", d.msgs[i]);
    r1_recipe_diag_release(&d);
    assert_int_equal(rc, 0);
    assert_non_null(r);
    return r;
}

static void hash_of(const struct r1_recipe *r, char hex[65])
{
    assert_int_equal(r1_recipe_hash(r, hex), 0);
    assert_int_equal(strlen(hex), 64);
}

static void test_defaults(void **state)
{
    (void)state;
    struct r1_recipe *r = load_ok("good/base.yaml", NULL, 0);
    assert_string_equal(r->name, "tiny-r1");
    assert_int_equal(r->seed, 42);
    assert_int_equal(r->backend, R1_RECIPE_BACKEND_AUTO);
    assert_int_equal(r->model_init.kind, R1_SOURCE_SCRATCH);
    assert_string_equal(r->model_init.preset, "tiny");
    assert_string_equal(r->tokenizer, "bytes");
    assert_null(r->chat_template);
    assert_null(r->extends);
    assert_int_equal(r->n_stages, 3);

    const struct r1_stage_cfg *p = &r->stages[0], *s = &r->stages[1], *g = &r->stages[2];
    assert_int_equal(p->kind, R1_STAGE_PRETRAIN);
    assert_int_equal(p->init.kind, R1_SOURCE_SCRATCH);
    assert_int_equal(p->steps, 20);
    assert_int_equal(p->epochs, 0);
    assert_int_equal(p->micro_batch_size, 4);
    assert_int_equal(p->data.format, R1_DATA_TEXT);
    assert_non_null(strstr(p->data.path, "/tests/recipes/good/corpus.txt"));
    assert_true(p->data.path[0] == '/');
    assert_int_equal(p->optim.schedule, R1_LR_COSINE);
    assert_true(p->optim.lr == 1e-3f);
    assert_int_equal(p->optim.warmup_steps, 2);

    /* defaults, matching r1_optim_config_default */
    struct r1_optim_config oc;
    r1_optim_config_default(&oc);
    assert_true(s->optim.lr == oc.lr && s->optim.beta1 == oc.beta1 && s->optim.beta2 == oc.beta2);
    assert_true(s->optim.eps == oc.eps && s->optim.weight_decay == oc.weight_decay);
    assert_true(s->optim.max_grad_norm == oc.max_grad_norm && s->optim.schedule == oc.schedule);
    assert_int_equal(s->batch_size, 8);
    assert_int_equal(s->micro_batch_size, 8); /* 0 means batch_size */
    assert_int_equal(s->seq_len, 512);
    assert_int_equal(s->save_every, 100);
    assert_int_equal(s->data.format, R1_DATA_JSONL);
    assert_string_equal(s->data.prompt_field, "prompt");
    assert_string_equal(s->data.completion_field, "completion");
    assert_int_equal(s->init.kind, R1_SOURCE_STAGE); /* default: the previous stage */
    assert_int_equal(s->init.stage, 0);
    assert_string_equal(s->init.spec, "pretrain");

    assert_int_equal(g->kind, R1_STAGE_GRPO);
    assert_int_equal(g->init.stage, 1);
    assert_int_equal(g->grpo.prompts_per_step, 4);
    assert_int_equal(g->grpo.group_size, 4);
    assert_int_equal(g->grpo.minibatches, 2);
    assert_int_equal(g->grpo.iterations, 1);
    assert_int_equal(g->grpo.loss_type, R1_GRPO_LOSS_GRPO);
    assert_int_equal(g->grpo.scale_rewards, R1_GRPO_SCALE_GROUP);
    assert_false(g->grpo.mask_truncated);
    assert_true(g->grpo.epsilon_low == 0.2f && g->grpo.beta == 0.04f);
    assert_int_equal(g->grpo.n_rewards, 2);
    assert_string_equal(g->grpo.rewards[0].name, "accuracy");
    assert_true(g->grpo.rewards[0].weight == 1.0f && g->grpo.rewards[1].weight == 0.5f);
    r1_recipe_free(r);
}

static void test_extends(void **state)
{
    (void)state;
    struct r1_recipe *r = load_ok("good/child.yaml", NULL, 0);
    assert_string_equal(r->name, "tiny-r1"); /* from the parent */
    assert_int_equal(r->seed, 7);            /* overridden */
    assert_non_null(r->extends);
    assert_non_null(strstr(r->extends, "base.yaml"));
    assert_int_equal(r->n_stages, 4);
    assert_string_equal(r->stages[1].name, "sft");
    assert_int_equal(r->stages[1].steps, 30);            /* child key */
    assert_true(r->stages[1].optim.lr == 2e-5f);          /* child key */
    assert_non_null(strstr(r->stages[1].data.path, "sft.jsonl")); /* parent key kept */
    assert_int_equal(r->stages[2].steps, 5);             /* parent stage untouched */
    assert_string_equal(r->stages[3].name, "rs");         /* new stage appended */
    assert_int_equal(r->stages[3].kind, R1_STAGE_REJECTION_SFT);
    assert_int_equal(r->stages[3].init.stage, 2);
    assert_int_equal(r->stages[3].epochs, 1);
    assert_int_equal(r->stages[3].rejection.samples_per_prompt, 8);
    assert_int_equal(r->stages[3].rejection.keep_per_prompt, 2);
    assert_true(r->stages[3].rejection.temperature == 0.7f);
    r1_recipe_free(r);
}

/* sft and rejection_sft evaluate with one greedy completion unless told otherwise. */
static void test_eval_protocol(void **state)
{
    (void)state;
    struct r1_recipe *r = load_ok("good/base.yaml", NULL, 0);
    assert_int_equal(r->stages[1].kind, R1_STAGE_SFT);
    assert_int_equal(r->stages[1].eval_samples, 1);
    assert_true(r->stages[1].eval_temperature == 0.0f);
    r1_recipe_free(r);
    const char *sets[] = {"stages.sft.eval_samples=4", "stages.sft.eval_temperature=0.6"};
    r = load_ok("good/base.yaml", sets, 2);
    assert_int_equal(r->stages[1].eval_samples, 4);
    assert_true(r->stages[1].eval_temperature == 0.6f);
    r1_recipe_free(r);
}

/* Model paths may start with $R1_CACHE (the model cache) or ~ ($HOME). */
static void test_cache_paths(void **state)
{
    (void)state;
    char tmp[] = "/tmp/r1-recipe-cache-XXXXXX", path[4200], want[4200];
    assert_non_null(mkdtemp(tmp));
    snprintf(path, sizeof(path), "%s/m", tmp);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/m/x.gguf", tmp);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("GGUF", f);
    fclose(f);
    char *real = realpath(path, NULL);
    snprintf(want, sizeof(want), "%s", real);
    free(real);
    const char *old_cache = getenv("R1_CACHE"), *old_home = getenv("HOME");
    char *saved_cache = old_cache ? strdup(old_cache) : NULL;
    char *saved_home = old_home ? strdup(old_home) : NULL;

    setenv("R1_CACHE", tmp, 1);
    const char *sets[] = {"model.init=$R1_CACHE/m/x.gguf"};
    struct r1_recipe *r = load_ok("good/base.yaml", sets, 1);
    assert_string_equal(r->model_init.spec, want);
    assert_int_equal(r->model_init.kind, R1_SOURCE_GGUF);
    r1_recipe_free(r);

    unsetenv("R1_CACHE"); /* then the cache is ~/.cache/r1 */
    snprintf(path, sizeof(path), "%s/.cache", tmp);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/.cache/r1", tmp);
    assert_int_equal(symlink(tmp, path), 0);
    setenv("HOME", tmp, 1);
    r = load_ok("good/base.yaml", sets, 1);
    assert_string_equal(r->model_init.spec, want);
    r1_recipe_free(r);
    const char *home_sets[] = {"model.init=~/m/x.gguf"};
    r = load_ok("good/base.yaml", home_sets, 1);
    assert_string_equal(r->model_init.spec, want);
    r1_recipe_free(r);

    if (saved_cache)
        setenv("R1_CACHE", saved_cache, 1);
    if (saved_home)
        setenv("HOME", saved_home, 1);
    free(saved_cache);
    free(saved_home);
    unlink(path);
    snprintf(path, sizeof(path), "%s/.cache", tmp);
    rmdir(path);
    snprintf(path, sizeof(path), "%s/m/x.gguf", tmp);
    unlink(path);
    snprintf(path, sizeof(path), "%s/m", tmp);
    rmdir(path);
    rmdir(tmp);
}

static void test_set(void **state)
{
    (void)state;
    const char *sets[] = {
        "seed=7",
        "stages.reasoning_rl.steps=50",
        "stages.sft.optimizer.lr=1e-5",
        "stages.reasoning_rl.grpo.scale_rewards=none",
        "stages.reasoning_rl.grpo.mask_truncated=true",
        "backend=cpu",
        "model.chat_template=chatml",
    };
    struct r1_recipe *r = load_ok("good/base.yaml", sets, 7);
    assert_int_equal(r->seed, 7);
    assert_int_equal(r->stages[2].steps, 50);
    assert_true(r->stages[1].optim.lr == 1e-5f);
    assert_int_equal(r->stages[2].grpo.scale_rewards, R1_GRPO_SCALE_NONE);
    assert_true(r->stages[2].grpo.mask_truncated);
    assert_int_equal(r->backend, R1_RECIPE_BACKEND_CPU);
    assert_string_equal(r->chat_template, "chatml");
    r1_recipe_free(r);

    /* errors name the --set and say what is wrong */
    const char *bad[] = {"stages.sft.steps=lots", "stages.x.steps=3", "seed=-1"};
    struct r1_recipe_diag d = {0};
    r = NULL;
    assert_int_equal(r1_recipe_load(&r, recipe_path("good/base.yaml"), bad, 3, &d), R1_EINVAL);
    assert_null(r);
    assert_int_equal(d.n, 3);
    assert_string_equal(d.msgs[0], "--set stages.sft.steps: 'steps' must be an integer, got 'lots'");
    assert_non_null(strstr(d.msgs[1], "--set stages.x.steps: no stage named 'x'"));
    assert_non_null(strstr(d.msgs[2], "--set seed: 'seed' is -1, out of range"));
    r1_recipe_diag_release(&d);
}

static void test_hash(void **state)
{
    (void)state;
    char a[65], b[65], c[65];
    struct r1_recipe *r = load_ok("good/base.yaml", NULL, 0);
    hash_of(r, a);
    r1_recipe_free(r);
    r = load_ok("good/reformatted.yaml", NULL, 0);
    hash_of(r, b);
    r1_recipe_free(r);
    assert_string_equal(a, b);
    const char *sets[] = {"stages.pretrain.optimizer.beta2=0.99"};
    r = load_ok("good/base.yaml", sets, 1);
    hash_of(r, c);
    r1_recipe_free(r);
    assert_string_not_equal(a, c);
}

static void test_show_round_trip(void **state)
{
    (void)state;
    char a[65], b[65];
    struct r1_recipe *r = load_ok("good/child.yaml", NULL, 0);
    hash_of(r, a);
    char tmp[] = "/tmp/r1-recipe-XXXXXX";
    int fd = mkstemp(tmp);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    assert_int_equal(r1_recipe_write_yaml(r, f), 0);
    fclose(f);
    r1_recipe_free(r);
    struct r1_recipe_diag d = {0};
    int rc = r1_recipe_load(&r, tmp, NULL, 0, &d);
    for (int i = 0; i < d.n; i++)
        fprintf(stderr, "%s\n", d.msgs[i]);
    r1_recipe_diag_release(&d);
    unlink(tmp);
    assert_int_equal(rc, 0);
    hash_of(r, b);
    assert_string_equal(a, b);
    assert_int_equal(r->n_stages, 4);
    r1_recipe_free(r);
}

static void test_all_problems(void **state)
{
    (void)state;
    struct r1_recipe *r = NULL;
    struct r1_recipe_diag d = {0};
    assert_int_equal(
        r1_recipe_load(&r, recipe_path("bad/three-problems.yaml"), NULL, 0, &d), R1_EINVAL);
    assert_null(r);
    assert_int_equal(d.n, 3);
    assert_non_null(strstr(r1_err_last(), "3 problems"));
    assert_non_null(strstr(d.msgs[0], "unknown key 'sead' (did you mean 'seed'?)"));
    assert_non_null(strstr(d.msgs[1], "'steps' must be an integer"));
    assert_non_null(strstr(d.msgs[2], "'schedule' must be one of constant|cosine|linear"));
    r1_recipe_diag_release(&d);

    assert_int_equal(r1_recipe_load(&r, recipe_path("bad/cycle-a.yaml"), NULL, 0, &d), R1_EINVAL);
    int cycle = 0;
    for (int i = 0; i < d.n; i++)
        cycle += strstr(d.msgs[i], "cycle-b.yaml:2:10: extends cycle") != NULL;
    assert_int_equal(cycle, 1);
    r1_recipe_diag_release(&d);
}

static void test_schema(void **state)
{
    (void)state;
    int n;
    const struct r1_recipe_key *t = r1_recipe_schema(&n);
    assert_true(n > 40);
    /* every section a row names exists, and keys are unique within a section */
    for (int i = 0; i < n; i++) {
        if (t[i].type == R1_KEY_MAP || t[i].type == R1_KEY_LIST) {
            int rows = 0;
            for (int j = 0; j < n; j++)
                rows += strcmp(t[j].section, t[i].choices) == 0;
            assert_true(rows > 0);
        }
        for (int j = i + 1; j < n; j++)
            assert_false(strcmp(t[i].section, t[j].section) == 0 &&
                         strcmp(t[i].key, t[j].key) == 0);
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(r1_recipe_write_keys(f), 0);
    fclose(f);
    assert_non_null(strstr(buf, "| stages[].optimizer.lr | float | 0.0003 | (0, 10) |"));
    assert_non_null(strstr(buf, "| stages[].grpo.rewards[].weight |"));
    free(buf);
}

int main(void)
{
    const char *src = getenv("R1_SRC");
    snprintf(dir, sizeof(dir), "%s/tests/recipes", src ? src : ".");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),      cmocka_unit_test(test_extends),
        cmocka_unit_test(test_cache_paths),   cmocka_unit_test(test_eval_protocol),
        cmocka_unit_test(test_set),           cmocka_unit_test(test_hash),
        cmocka_unit_test(test_show_round_trip), cmocka_unit_test(test_all_problems),
        cmocka_unit_test(test_schema),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
