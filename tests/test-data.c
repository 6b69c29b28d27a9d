/* test-data.c - corpora: parsing, packing into windows, pairs, resumable order, errors;
 * sft data: chat templates, messages, assistant-only targets, generator pairs, packed rows
 * (exact layout, same log-probs as unpacked rows through a tiny model, resume mid-epoch). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/backend.h"
#include "core/err.h"
#include "core/model.h"
#include "core/tokenizer.h"
#include "stages/data/corpus.h"
#include "stages/data/gen.h"
#include "stages/data/prompts.h"
#include "stages/lm.h"

static struct r1_tokenizer *tok;
static char dir[] = "/tmp/r1-test-data-XXXXXX";

static int setup(void **state)
{
    (void)state;
    return (mkdtemp(dir) && !r1_tokenizer_bytes_create(&tok)) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    r1_tokenizer_free(tok);
    return system(cmd);
}

static const char *write_tmp(const char *name, const char *text)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_text_documents_and_windows(void **state)
{
    (void)state;
    /* three documents: "ab", "c\nd" (inner newline kept), "ef" */
    struct r1_corpus_spec sp = {.path = write_tmp("t.txt", "ab\n\n\nc\nd\n  \nef\n"),
                                .kind = R1_CORPUS_DOCUMENTS, .format = R1_CORPUS_TEXT};
    struct r1_corpus *c = NULL;
    assert_int_equal(r1_corpus_load(&c, &sp, tok), 0);
    assert_int_equal(c->n_examples, 3);
    /* a b EOS c \n d EOS e f EOS */
    const int32_t want[] = {'a', 'b', 256, 'c', '\n', 'd', 256, 'e', 'f', 256};
    assert_int_equal(c->n_tokens, 10);
    assert_memory_equal(c->tokens, want, sizeof(want));
    assert_int_equal(strlen(c->sha256), 64);

    /* T = 4: windows [0..4], [4..8] -> 2 rows */
    assert_int_equal(r1_corpus_rows(c, 4), 2);
    struct r1_sampler s;
    assert_int_equal(r1_sampler_init(&s, c, 4, 1), 0);
    int32_t tk[8], ps[8], sg[8], tg[8];
    float w[8];
    int64_t scored = r1_sampler_next(&s, 2, tk, ps, sg, tg, w);
    /* find the row that starts at token 0 */
    int r0 = tk[0] == 'a' ? 0 : 1;
    const int32_t *t0 = tk + 4 * r0, *p0 = ps + 4 * r0, *s0 = sg + 4 * r0, *g0 = tg + 4 * r0;
    /* a b EOS | c: positions restart, segment changes, EOS's target (c) is masked */
    const int32_t wt[4] = {'a', 'b', 256, 'c'}, wp[4] = {0, 1, 2, 0}, ws[4] = {0, 0, 0, 1};
    const int32_t wg[4] = {'b', 256, -1, '\n'};
    assert_memory_equal(t0, wt, sizeof(wt));
    assert_memory_equal(p0, wp, sizeof(wp));
    assert_memory_equal(s0, ws, sizeof(ws));
    assert_memory_equal(g0, wg, sizeof(wg));
    assert_int_equal(scored, 6); /* 8 targets, one masked per window */
    r1_sampler_release(&s);
    r1_corpus_free(c);
}

static void test_pairs(void **state)
{
    (void)state;
    struct r1_corpus_spec sp = {
        .path = write_tmp("p.jsonl", "{\"q\": \"1+1=\", \"a\": \"2\"}\n\n"
                                     "{\"q\": \"long prompt here\", \"a\": \"x\"}\n"),
        .kind = R1_CORPUS_PAIRS, .format = R1_CORPUS_JSONL, .prompt_field = "q",
        .completion_field = "a"};
    struct r1_corpus *c = NULL;
    assert_int_equal(r1_corpus_load(&c, &sp, tok), 0);
    assert_int_equal(c->n_examples, 2);
    assert_int_equal(c->prompt_len[0], 4);
    struct r1_sampler s;
    assert_int_equal(r1_sampler_init(&s, c, 8, 3), 0);
    assert_int_equal(r1_sampler_seek(&s, 0, 0), 0);
    int32_t tk[16], ps[16], sg[16], tg[16];
    float w[16];
    r1_sampler_next(&s, 2, tk, ps, sg, tg, w);
    int r = tk[0] == '1' ? 0 : 1;
    /* "1+1=" "2" EOS: inputs 1 + 1 = 2, targets only on "2" (at the '=') and EOS */
    const int32_t wg[8] = {-1, -1, -1, '2', 256, -1, -1, -1};
    const int32_t wsg[8] = {0, 0, 0, 0, 0, -1, -1, -1};
    assert_memory_equal(tg + 8 * r, wg, sizeof(wg));
    assert_memory_equal(sg + 8 * r, wsg, sizeof(wsg));
    assert_true(w[8 * r + 3] == 1.0f && w[8 * r + 2] == 0.0f);
    /* the long prompt (16 tokens) is truncated to T: nothing of it is scored */
    for (int t = 0; t < 8; t++)
        assert_int_equal(tg[8 * (1 - r) + t], -1);
    r1_sampler_release(&s);
    r1_corpus_free(c);
}

/* The order is a function of (seed, epoch): seeking to a saved (epoch, cursor) continues
 * exactly as an uninterrupted sampler does, across an epoch boundary. */
static void test_resume_order(void **state)
{
    (void)state;
    char text[4096] = "";
    for (int i = 0; i < 40; i++) {
        char line[64];
        snprintf(line, sizeof(line), "document number %d\n\n", i);
        strcat(text, line);
    }
    struct r1_corpus_spec sp = {.path = write_tmp("r.txt", text), .kind = R1_CORPUS_DOCUMENTS,
                                .format = R1_CORPUS_TEXT};
    struct r1_corpus *c = NULL;
    assert_int_equal(r1_corpus_load(&c, &sp, tok), 0);
    enum { T = 16, B = 3 };
    struct r1_sampler a, b;
    assert_int_equal(r1_sampler_init(&a, c, T, 9), 0);
    assert_int_equal(r1_sampler_init(&b, c, T, 9), 0);
    int32_t ta[B * T], tb[B * T], x[B * T], y[B * T], z[B * T];
    float w[B * T];
    int steps = (int)(2 * a.n_rows / B) + 3; /* crosses two epoch boundaries */
    for (int i = 0; i < steps / 2; i++) {
        r1_sampler_next(&a, B, ta, x, y, z, w);
        r1_sampler_next(&b, B, tb, x, y, z, w);
    }
    int64_t ep = b.epoch, cur = b.cursor;
    r1_sampler_release(&b);
    assert_int_equal(r1_sampler_init(&b, c, T, 9), 0);
    assert_int_equal(r1_sampler_seek(&b, ep, cur), 0);
    for (int i = steps / 2; i < steps; i++) {
        r1_sampler_next(&a, B, ta, x, y, z, w);
        r1_sampler_next(&b, B, tb, x, y, z, w);
        assert_memory_equal(ta, tb, sizeof(ta));
    }
    assert_true(a.epoch >= 2);
    /* a different seed gives a different order */
    struct r1_sampler d;
    assert_int_equal(r1_sampler_init(&d, c, T, 10), 0);
    assert_true(memcmp(a.order, d.order, sizeof(int64_t) * (size_t)a.n_rows) != 0 ||
                a.epoch != d.epoch);
    assert_int_equal(r1_sampler_seek(&d, 0, d.n_rows + 1), R1_EINVAL);
    r1_sampler_release(&a);
    r1_sampler_release(&b);
    r1_sampler_release(&d);
    r1_corpus_free(c);
}

static void test_errors(void **state)
{
    (void)state;
    struct r1_corpus *c = NULL;
    struct r1_corpus_spec sp = {.path = write_tmp("bad.jsonl", "{\"text\": \"ok\"}\n{\"text\": 5}\n"),
                                .kind = R1_CORPUS_DOCUMENTS, .format = R1_CORPUS_JSONL};
    assert_int_equal(r1_corpus_load(&c, &sp, tok), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "bad.jsonl:2:"));
    sp.path = write_tmp("bad2.jsonl", "{\"text\": \"ok\"}\nnot json\n");
    assert_int_equal(r1_corpus_load(&c, &sp, tok), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "bad2.jsonl:2:"));
    sp.path = write_tmp("empty.txt", "\n\n   \n");
    sp.format = R1_CORPUS_TEXT;
    assert_int_equal(r1_corpus_load(&c, &sp, tok), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "no examples"));
    sp.kind = R1_CORPUS_PAIRS;
    assert_int_equal(r1_corpus_load(&c, &sp, tok), R1_EINVAL);
    sp.path = "/nonexistent/data.txt";
    sp.kind = R1_CORPUS_DOCUMENTS;
    assert_int_equal(r1_corpus_load(&c, &sp, tok), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "/nonexistent/data.txt"));
    /* too short for the window */
    sp.path = write_tmp("short.txt", "ab\n");
    assert_int_equal(r1_corpus_load(&c, &sp, tok), 0);
    struct r1_sampler s;
    assert_int_equal(r1_sampler_init(&s, c, 8, 1), R1_EINVAL);
    r1_corpus_free(c);
}

/* A pretraining corpus straight from a generator: its demo texts, deterministic. */
static void test_generated_documents(void **state)
{
    (void)state;
    struct r1_corpus_spec sp = {.path = "arith", .kind = R1_CORPUS_DOCUMENTS,
                                .format = R1_CORPUS_JSONL, .text_field = "text",
                                .generator = "arith:digits=1,demo=1", .gen_n = 50, .gen_seed = 9};
    struct r1_corpus *a = NULL, *b = NULL;
    assert_int_equal(r1_corpus_load(&a, &sp, tok), 0);
    assert_int_equal(r1_corpus_load(&b, &sp, tok), 0);
    assert_int_equal(a->n_examples, 50);
    assert_string_equal(a->sha256, b->sha256);
    assert_int_equal(a->n_tokens, b->n_tokens);
    assert_memory_equal(a->tokens, b->tokens, (size_t)a->n_tokens * sizeof(int32_t));
    /* every document is a worked example: it holds the think and answer tags */
    assert_true(r1_tokenizer_lookup(tok, "<think>") >= 0);
    int32_t think = r1_tokenizer_lookup(tok, "<think>");
    int64_t n_think = 0;
    for (int64_t i = 0; i < a->n_tokens; i++)
        n_think += a->tokens[i] == think;
    assert_int_equal(n_think, 50);
    r1_corpus_free(a);
    r1_corpus_free(b);
    sp.generator = "arith:digits=99";
    assert_int_equal(r1_corpus_load(&a, &sp, tok), R1_EINVAL);
}

static struct r1_corpus_spec pairs_spec(const char *path)
{
    struct r1_corpus_spec sp = {.path = path, .kind = R1_CORPUS_PAIRS, .format = R1_CORPUS_JSONL};
    return sp;
}

/* The tokens of example e as text, and its scored tokens as text ('.' for an unscored
 * one), for exact comparisons; special tokens are written as #ID. */
static void example_text(const struct r1_corpus *c, int64_t e, char *text, char *mask)
{
    char *t = text, *m = mask;
    for (int64_t i = c->start[e]; i < c->start[e + 1]; i++) {
        int32_t id = c->tokens[i];
        int k = id < 256 ? snprintf(t, 8, "%c", id) : snprintf(t, 8, "#%d", id);
        for (int j = 0; j < k; j++)
            *m++ = c->scored[i] ? t[j] : '.';
        t += k;
    }
    *t = *m = '\0';
}

/* prompt/completion with a prompt template and a chat template: one user and one
 * assistant turn; the assistant's content and <|im_end|> are scored, no EOS, the "\n"
 * after the marker is dropped. */
static void test_pairs_chat(void **state)
{
    (void)state;
    struct r1_corpus_spec sp = pairs_spec(write_tmp("pc.jsonl", "{\"prompt\": \"2+3\", "
                                                    "\"completion\": \"5\"}\n"));
    sp.prompt_template = "Q: {prompt} A:";
    sp.chat_template = "chatml";
    struct r1_corpus *c = NULL;
    char text[512], mask[512];
    assert_int_equal(r1_corpus_load(&c, &sp, tok), 0);
    example_text(c, 0, text, mask);
    assert_string_equal(text, "#261user\nQ: 2+3 A:#262\n#261assistant\n5#262");
    assert_string_equal(mask, ".....................................5#262");
    assert_int_equal(c->prompt_len[0], c->start[1] - c->start[0] - 2);
    r1_corpus_free(c);
    /* no chat template: the templated prompt, the completion and a scored EOS */
    sp.chat_template = NULL;
    assert_int_equal(r1_corpus_load(&c, &sp, tok), 0);
    example_text(c, 0, text, mask);
    assert_string_equal(text, "Q: 2+3 A:5#256");
    assert_string_equal(mask, ".........5#256");
    assert_int_equal(c->prompt_len[0], 9);
    r1_corpus_free(c);
    /* plain: no end marker, so EOS ends the assistant turn */
    sp.chat_template = "plain";
    assert_int_equal(r1_corpus_load(&c, &sp, tok), 0);
    example_text(c, 0, text, mask);
    assert_string_equal(text, "User: Q: 2+3 A:\nAssistant: 5#256");
    r1_corpus_free(c);
    sp.chat_template = "jinja?";
    assert_int_equal(r1_corpus_load(&c, &sp, tok), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "chatml, deepseek-r1, llama3, plain, r1-zero"));
}

/* A chat: every assistant turn is scored, user and system turns are not. */
static void test_messages(void **state)
{
    (void)state;
    const char *line = "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}, "
                       "{\"role\": \"user\", \"content\": \"hi\"}, "
                       "{\"role\": \"assistant\", \"content\": \"yo\"}, "
                       "{\"role\": \"user\", \"content\": \"bye\"}, "
                       "{\"role\": \"assistant\", \"content\": \"ok\"}]}\n";
    struct r1_corpus_spec sp = pairs_spec(write_tmp("m.jsonl", line));
    sp.chat_template = "chatml";
    struct r1_corpus *c = NULL;
    char text[1024], mask[1024];
    assert_int_equal(r1_corpus_load(&c, &sp, tok), 0);
    example_text(c, 0, text, mask);
    assert_string_equal(text, "#261system\nS#262\n#261user\nhi#262\n#261assistant\nyo#262\n"
                              "#261user\nbye#262\n#261assistant\nok#262");
    assert_string_equal(mask, "...............................................yo#262"
                              "................................ok#262");
    r1_corpus_free(c);
    sp.chat_template = "plain";
    assert_int_equal(r1_corpus_load(&c, &sp, tok), 0);
    example_text(c, 0, text, mask);
    assert_string_equal(text, "System: S\nUser: hi\nAssistant: yo#256\nUser: bye\n"
                              "Assistant: ok#256");
    assert_string_equal(mask, "..............................yo#256"
                              "......................ok#256");
    r1_corpus_free(c);
    /* a custom field name; a line with prompt/completion mixes in */
    sp.path = write_tmp("m2.jsonl", "{\"chat\": [{\"role\": \"user\", \"content\": \"a\"}, "
                        "{\"role\": \"assistant\", \"content\": \"b\"}]}\n"
                        "{\"prompt\": \"c\", \"completion\": \"d\"}\n");
    sp.messages_field = "chat";
    assert_int_equal(r1_corpus_load(&c, &sp, tok), 0);
    assert_int_equal(c->n_examples, 2);
    r1_corpus_free(c);
}

static void expect_error(struct r1_corpus_spec *sp, const char *text, const char *want)
{
    struct r1_corpus *c = NULL;
    sp->path = write_tmp("bad-chat.jsonl", text);
    assert_int_equal(r1_corpus_load(&c, sp, tok), R1_EINVAL);
    assert_null(c);
    if (!strstr(r1_err_last(), want))
        fail_msg("error '%s' lacks '%s'", r1_err_last(), want);
}

static void test_messages_errors(void **state)
{
    (void)state;
    struct r1_corpus_spec sp = pairs_spec(NULL);
    sp.chat_template = "chatml";
    const char *ok = "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, "
                     "{\"role\": \"assistant\", \"content\": \"b\"}]}\n";
    char text[512];
    snprintf(text, sizeof(text), "%s\n{\"messages\": \"hello\"}\n", ok);
    expect_error(&sp, text, "bad-chat.jsonl:3: 'messages' must be a list of {role, content}");
    snprintf(text, sizeof(text), "%s{\"messages\": [{\"role\": \"user\"}]}\n", ok);
    expect_error(&sp, text, "bad-chat.jsonl:2: 'messages' must be a list of {role, content}");
    snprintf(text, sizeof(text), "{\"messages\": [{\"role\": \"bot\", \"content\": \"x\"}]}\n");
    expect_error(&sp, text, "bad-chat.jsonl:1: 'messages': message 1: role 'bot'");
    snprintf(text, sizeof(text), "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}\n");
    expect_error(&sp, text, "bad-chat.jsonl:1: 'messages' has no assistant turn");
    snprintf(text, sizeof(text), "{\"prompt\": \"x\"}\n");
    expect_error(&sp, text, "bad-chat.jsonl:1: fields \"prompt\" and \"completion\"");
    sp.chat_template = NULL;
    expect_error(&sp, ok, "bad-chat.jsonl:1: 'messages' is a chat and needs a chat template");
}

/* sft pairs from a generator's demonstrations: the prompt template applies to the
 * prompt; the worked completion and EOS are scored. */
static void test_generated_pairs(void **state)
{
    (void)state;
    struct r1_corpus_spec sp = pairs_spec("arith:digits=1,demo=1");
    sp.generator = "arith:digits=1,demo=1";
    sp.gen_n = 20;
    sp.gen_seed = 4;
    sp.prompt_template = "r1-zero";
    struct r1_corpus *c = NULL;
    assert_int_equal(r1_corpus_load(&c, &sp, tok), 0);
    assert_int_equal(c->n_examples, 20);
    struct r1_datagen *g = NULL;
    json_t *o = NULL;
    assert_int_equal(r1_datagen_parse(&g, sp.generator), 0);
    assert_int_equal(r1_datagen_example(g, 4, R1_SPLIT_TRAIN, 0, &o), 0);
    char *p = r1_prompt_template_apply("r1-zero", json_string_value(json_object_get(o, "prompt")));
    const char *comp = json_string_value(json_object_get(o, "completion"));
    int32_t *ids = NULL;
    int n = 0;
    char want[2048];
    snprintf(want, sizeof(want), "%s%s<|endoftext|>", p, comp);
    assert_int_equal(r1_tokenizer_encode(tok, want, strlen(want), &ids, &n), 0);
    assert_int_equal(c->start[1] - c->start[0], n);
    assert_memory_equal(c->tokens, ids, (size_t)n * sizeof(int32_t));
    int32_t *pids = NULL;
    int pn = 0;
    assert_int_equal(r1_tokenizer_encode(tok, p, strlen(p), &pids, &pn), 0);
    assert_int_equal(c->prompt_len[0], pn);
    for (int i = 0; i < n; i++)
        assert_int_equal(c->scored[i], i >= pn);
    free(ids);
    free(pids);
    free(p);
    json_decref(o);
    r1_datagen_free(g);
    r1_corpus_free(c);
    /* without demo=1 there is no completion to learn */
    sp.generator = "arith:digits=1";
    assert_int_equal(r1_corpus_load(&c, &sp, tok), R1_EINVAL);
    if (!strstr(r1_err_last(), "generator 'arith:digits=1' example 0: no \"completion\"; sft "
                "on a generator needs worked completions: add demo=1"))
        fail_msg("%s", r1_err_last());
}

static const char *const pack_lines = "{\"prompt\": \"ab\", \"completion\": \"c\"}\n"
                                      "{\"prompt\": \"d\", \"completion\": \"ef\"}\n"
                                      "{\"prompt\": \"ghij\", \"completion\": \"k\"}\n"
                                      "{\"prompt\": \"xyzxyzxyz\", \"completion\": \"w\"}\n";

/* Packing by hand: examples in order 0 1 2 3 into rows of T = 8.  Footprints (tokens
 * less the last) are 3, 3, 5 and 8 (11 tokens truncated to T + 1), so the rows are
 * [0 1], [2], [3]; then the epoch ends. */
static void test_pack_layout(void **state)
{
    (void)state;
    struct r1_corpus_spec sp = pairs_spec(write_tmp("pack.jsonl", pack_lines));
    sp.pack = true;
    struct r1_corpus *c = NULL;
    assert_int_equal(r1_corpus_load(&c, &sp, tok), 0);
    enum { T = 8 };
    struct r1_sampler s;
    assert_int_equal(r1_sampler_init(&s, c, T, 1), 0);
    for (int i = 0; i < 4; i++) /* the fill under test, not the shuffle */
        s.order[i] = i;
    int32_t tk[3 * T], ps[3 * T], sg[3 * T], tg[3 * T];
    float w[3 * T];
    int64_t scored = r1_sampler_next(&s, 3, tk, ps, sg, tg, w);
    const int32_t E = 256;
    const int32_t wt[3 * T] = {'a', 'b', 'c', 'd', 'e', 'f', 0, 0,
                               'g', 'h', 'i', 'j', 'k', 0, 0, 0,
                               'x', 'y', 'z', 'x', 'y', 'z', 'x', 'y'};
    const int32_t wp[3 * T] = {0, 1, 2, 0, 1, 2, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0,
                               0, 1, 2, 3, 4, 5, 6, 7};
    const int32_t ws[3 * T] = {0, 0, 0, 1, 1, 1, -1, -1, 0, 0, 0, 0, 0, -1, -1, -1,
                               0, 0, 0, 0, 0, 0, 0, 0};
    const int32_t wg[3 * T] = {-1, 'c', E, 'e', 'f', E, -1, -1,
                               -1, -1, -1, 'k', E, -1, -1, -1,
                               -1, -1, -1, -1, -1, -1, -1, -1};
    assert_memory_equal(tk, wt, sizeof(wt));
    assert_memory_equal(ps, wp, sizeof(wp));
    assert_memory_equal(sg, ws, sizeof(ws));
    assert_memory_equal(tg, wg, sizeof(wg));
    for (int t = 0; t < 3 * T; t++)
        assert_true(w[t] == (wg[t] >= 0 ? 1.0f : 0.0f));
    assert_int_equal(scored, 7);
    assert_int_equal(s.epoch, 0);
    assert_int_equal(s.cursor, 4);
    r1_sampler_next(&s, 1, tk, ps, sg, tg, w); /* the next row starts epoch 1 */
    assert_int_equal(s.epoch, 1);
    r1_sampler_release(&s);
    r1_corpus_free(c);
}

/* Rows per epoch are counted exactly (r1_sampler_rows equals the rows the sampler
 * actually makes), and a sampler sought to a position saved mid-epoch continues exactly
 * as an uninterrupted one, across epoch boundaries. */
static void test_pack_rows_and_resume(void **state)
{
    (void)state;
    char text[8192] = "";
    for (int i = 0; i < 50; i++) {
        char line[128];
        snprintf(line, sizeof(line), "{\"prompt\": \"%.*s\", \"completion\": \"%d\"}\n",
                 1 + (i * 7) % 13, "0123456789abcdefghij", i * i);
        strcat(text, line);
    }
    struct r1_corpus_spec sp = pairs_spec(write_tmp("packr.jsonl", text));
    sp.pack = true;
    struct r1_corpus *c = NULL;
    assert_int_equal(r1_corpus_load(&c, &sp, tok), 0);
    enum { T = 24, B = 3 };
    struct r1_sampler a, b;
    assert_int_equal(r1_sampler_init(&a, c, T, 5), 0);
    int32_t ta[B * T], tb[B * T], x[B * T], y[B * T], z[B * T];
    float w[B * T];
    int64_t want = r1_sampler_rows(&a, 3), rows = 0;
    assert_true(want > 3 && want < 3 * 50); /* packing helps */
    while (a.epoch < 3 || a.cursor < a.n_items) {
        r1_sampler_next(&a, 1, ta, x, y, z, w);
        rows++;
        if (a.epoch == 2 && a.cursor == a.n_items)
            break;
    }
    assert_int_equal(rows, want);
    r1_sampler_release(&a);

    assert_int_equal(r1_sampler_init(&a, c, T, 5), 0);
    assert_int_equal(r1_sampler_init(&b, c, T, 5), 0);
    int steps = (int)(2 * a.n_rows / B) + 3;
    for (int i = 0; i < steps / 2; i++) {
        r1_sampler_next(&a, B, ta, x, y, z, w);
        r1_sampler_next(&b, B, tb, x, y, z, w);
    }
    int64_t ep = b.epoch, cur = b.cursor;
    assert_true(cur > 0 && cur < b.n_items); /* mid-epoch */
    r1_sampler_release(&b);
    assert_int_equal(r1_sampler_init(&b, c, T, 5), 0);
    assert_int_equal(r1_sampler_seek(&b, ep, cur), 0);
    for (int i = steps / 2; i < steps; i++) {
        int64_t na = r1_sampler_next(&a, B, ta, x, y, z, w);
        int64_t nb = r1_sampler_next(&b, B, tb, x, y, z, w);
        assert_int_equal(na, nb);
        assert_memory_equal(ta, tb, sizeof(ta));
    }
    assert_true(a.epoch >= 1);
    assert_int_equal(r1_sampler_seek(&b, 0, b.n_items + 1), R1_EINVAL);
    r1_sampler_release(&a);
    r1_sampler_release(&b);
    r1_corpus_free(c);
}

/* A packed row through a tiny model gives every scored token the log-probability it has
 * when its example runs alone in an unpacked row: the attention keeps segments apart and
 * positions restart.  The unpacked sampler (same seed: same order) gives those rows. */
static void test_pack_logp_equals_unpacked(void **state)
{
    (void)state;
    const char *text = "{\"prompt\": \"12+7=\", \"completion\": \"19\"}\n"
                       "{\"prompt\": \"What is 3*4?\", \"completion\": \"<answer>12</answer>\"}\n"
                       "{\"prompt\": \"a\", \"completion\": \"bcd\"}\n"
                       "{\"prompt\": \"hello there\", \"completion\": \"general\"}\n"
                       "{\"prompt\": \"9-9=\", \"completion\": \"0\"}\n"
                       "{\"prompt\": \"x\", \"completion\": \"y\"}\n";
    enum { T = 48, N = 6 };
    struct r1_corpus_spec sp = pairs_spec(write_tmp("packlp.jsonl", text));
    struct r1_corpus *cu = NULL, *cp = NULL;
    assert_int_equal(r1_corpus_load(&cu, &sp, tok), 0);
    sp.pack = true;
    assert_int_equal(r1_corpus_load(&cp, &sp, tok), 0);
    struct r1_sampler su, sq;
    assert_int_equal(r1_sampler_init(&su, cu, T, 3), 0);
    assert_int_equal(r1_sampler_init(&sq, cp, T, 3), 0);
    int R = (int)sq.n_rows;
    assert_true(R >= 2 && R < N);
    static int32_t utk[N * T], ups[N * T], usg[N * T], utg[N * T];
    static int32_t ptk[N * T], pps[N * T], psg[N * T], ptg[N * T];
    static float uw[N * T], pw[N * T], ulp[N * T], plp[N * T];
    int64_t nu = r1_sampler_next(&su, N, utk, ups, usg, utg, uw);
    int64_t np = r1_sampler_next(&sq, R, ptk, pps, psg, ptg, pw);
    assert_int_equal(nu, np);
    assert_int_equal(sq.cursor, N);

    struct r1_backend *be = NULL;
    struct r1_model *m = NULL;
    struct r1_model_config mc;
    assert_int_equal(r1_backend_create(&be, R1_BACKEND_CPU, 0), 0);
    assert_int_equal(r1_model_config_preset(&mc, "tiny"), 0);
    assert_int_equal(r1_model_create(&m, &mc, be), 0);
    assert_int_equal(r1_model_init_weights(m, 21), 0);
    assert_int_equal(r1_model_reserve(m, N, T), 0);
    struct r1_batch bu = {N, T, utk, ups, usg, utg}, bp = {R, T, ptk, pps, psg, ptg};
    assert_int_equal(r1_model_forward(m, &bu, ulp, NULL), 0);
    assert_int_equal(r1_model_forward(m, &bp, plp, NULL), 0);
    /* walk the packed rows' segments in order: segment k is unpacked row k */
    int k = 0;
    double max_diff = 0;
    for (int r = 0; r < R; r++) {
        for (int t = 0; t < T;) {
            int32_t sid = psg[r * T + t];
            if (sid < 0)
                break;
            int len = 0;
            while (t + len < T && psg[r * T + t + len] == sid)
                len++;
            assert_true(k < N);
            for (int j = 0; j < len; j++) {
                int pi = r * T + t + j, ui = k * T + j;
                assert_int_equal(ptk[pi], utk[ui]);
                assert_int_equal(pps[pi], ups[ui]);
                assert_int_equal(ptg[pi], utg[ui]);
                assert_true(pw[pi] == uw[ui]);
                double d = fabs((double)plp[pi] - (double)ulp[ui]);
                max_diff = d > max_diff ? d : max_diff;
            }
            assert_int_equal(usg[k * T + len], -1); /* the unpacked row ends there too */
            t += len;
            k++;
        }
    }
    assert_int_equal(k, N);
    if (getenv("R1_TEST_VERBOSE"))
        printf("packed vs unpacked: %d rows for %d examples, max |dlogp| %g\n", R, N, max_diff);
    /* the same sums over fewer keys: equal up to float rounding of the GEMM blocking */
    assert_true(max_diff <= 1e-5);
    r1_model_free(m);
    r1_backend_free(be);
    r1_sampler_release(&su);
    r1_sampler_release(&sq);
    r1_corpus_free(cu);
    r1_corpus_free(cp);
}

/* Prompt sets with a chat template: the templated prompt as a user turn plus the
 * generation prompt, token for token the prompt part sft trains on. */
static void test_prompt_set_chat(void **state)
{
    (void)state;
    const char *path = write_tmp("ps.jsonl", "{\"prompt\": \"2+3\", \"answer\": \"5\", "
                                             "\"completion\": \"x\"}\n");
    struct r1_prompt_spec ps;
    memset(&ps, 0, sizeof(ps));
    ps.path = path;
    ps.template_ = "Q: {prompt} A:";
    struct r1_prompt_set *set = NULL;
    assert_int_equal(r1_prompt_set_load(&set, &ps, tok), 0);
    assert_string_equal(set->items[0].text, "Q: 2+3 A:"); /* no chat template: as before */
    r1_prompt_set_free(set);
    const char *names[] = {"chatml", "deepseek-r1", "plain"};
    for (int k = 0; k < 3; k++) {
        ps.chat_template = names[k];
        assert_int_equal(r1_prompt_set_load(&set, &ps, tok), 0);
        if (k == 0)
            assert_string_equal(set->items[0].text,
                                "<|im_start|>user\nQ: 2+3 A:<|im_end|>\n<|im_start|>assistant\n");
        struct r1_corpus_spec sp = pairs_spec(path);
        sp.prompt_template = ps.template_;
        sp.chat_template = names[k];
        struct r1_corpus *c = NULL;
        assert_int_equal(r1_corpus_load(&c, &sp, tok), 0);
        /* deepseek-r1's generation prompt opens "<think>\n" (tokens 257, '\n'), which a
         * rendered assistant turn leaves to the completion */
        int extra = k == 1 ? 2 : 0;
        assert_int_equal(c->prompt_len[0] + extra, set->items[0].n_tokens);
        assert_memory_equal(c->tokens, set->items[0].tokens,
                            (size_t)c->prompt_len[0] * sizeof(int32_t));
        if (extra) {
            assert_int_equal(set->items[0].tokens[c->prompt_len[0]], 257);
            assert_int_equal(set->items[0].tokens[c->prompt_len[0] + 1], '\n');
        }
        r1_corpus_free(c);
        r1_prompt_set_free(set);
    }
    ps.chat_template = "nope";
    assert_int_equal(r1_prompt_set_load(&set, &ps, tok), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "unknown chat template 'nope'"));
}

/* An sft stage sized by epochs over packed data runs ceil(packed rows / batch) updates,
 * the rows counted exactly per epoch. */
static void test_pack_epochs_steps(void **state)
{
    (void)state;
    struct r1_backend *be = NULL;
    struct r1_model *m = NULL;
    struct r1_model_config mc;
    assert_int_equal(r1_backend_create(&be, R1_BACKEND_CPU, 0), 0);
    assert_int_equal(r1_model_config_preset(&mc, "tiny"), 0);
    assert_int_equal(r1_model_create(&m, &mc, be), 0);
    struct r1_lm_config c;
    memset(&c, 0, sizeof(c));
    c.epochs = 3;
    c.batch_size = 2;
    c.micro_batch_size = 2;
    c.seq_len = 24;
    c.seed = 8;
    r1_optim_config_default(&c.optim);
    c.data = pairs_spec(write_tmp("packe.jsonl", pack_lines));
    c.data.pack = true;
    struct r1_lm_stage *s = NULL;
    assert_int_equal(r1_lm_stage_create(&s, m, tok, &c), 0);
    struct r1_corpus *corpus = NULL;
    assert_int_equal(r1_corpus_load(&corpus, &c.data, tok), 0);
    struct r1_sampler sm;
    assert_int_equal(r1_sampler_init(&sm, corpus, 24, 8), 0);
    int64_t rows = r1_sampler_rows(&sm, 3);
    assert_true(rows < 3 * 4);
    assert_int_equal(r1_lm_stage_steps_total(s), (rows + 1) / 2);
    r1_sampler_release(&sm);
    r1_corpus_free(corpus);
    r1_lm_stage_free(s);
    r1_model_free(m);
    r1_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_documents_and_windows),
        cmocka_unit_test(test_pairs),
        cmocka_unit_test(test_resume_order),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_generated_documents),
        cmocka_unit_test(test_pairs_chat),
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_messages_errors),
        cmocka_unit_test(test_generated_pairs),
        cmocka_unit_test(test_pack_layout),
        cmocka_unit_test(test_pack_rows_and_resume),
        cmocka_unit_test(test_pack_logp_equals_unpacked),
        cmocka_unit_test(test_prompt_set_chat),
        cmocka_unit_test(test_pack_epochs_steps),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
