/* test-template.c - built-in chat templates: exact text, assistant spans, generation
 * prompts, errors; detection of a model's Jinja template (tests/fixtures/chat-templates.txt)
 * and the resolution of a model.chat_template / --template setting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "core/template.h"
#include "stages/data/prompts.h"

#define MSG(role, text) {role, text, sizeof(text) - 1}

static const struct r1_chat_message chat[] = {
    MSG("system", "Be brief."),
    MSG("user", "2+3?"),
    MSG("assistant", "5"),
    MSG("user", "and 4+4?"),
    MSG("assistant", "8"),
};

static struct r1_chat_template *open_t(const char *name)
{
    struct r1_chat_template *t = NULL;
    assert_int_equal(r1_chat_template_open(&t, name), 0);
    assert_non_null(t);
    assert_string_equal(t->name, name);
    return t;
}

/* span i of r is exactly want */
static void span_is(const struct r1_chat_text *r, int i, const char *want)
{
    assert_true(i < r->n_spans);
    const struct r1_chat_span *s = &r->spans[i];
    assert_true(s->start <= s->end && s->end <= r->len);
    assert_int_equal(s->end - s->start, strlen(want));
    assert_memory_equal(r->text + s->start, want, strlen(want));
}

static void test_chatml(void **state)
{
    (void)state;
    struct r1_chat_template *t = open_t("chatml");
    assert_true(t->has_end_marker);
    struct r1_chat_text r;
    assert_int_equal(r1_chat_render(t, chat, 5, false, &r), 0);
    assert_string_equal(r.text, "<|im_start|>system\nBe brief.<|im_end|>\n"
                                "<|im_start|>user\n2+3?<|im_end|>\n"
                                "<|im_start|>assistant\n5<|im_end|>\n"
                                "<|im_start|>user\nand 4+4?<|im_end|>\n"
                                "<|im_start|>assistant\n8<|im_end|>\n");
    assert_int_equal(r.len, strlen(r.text));
    assert_int_equal(r.n_spans, 2);
    span_is(&r, 0, "5<|im_end|>");
    span_is(&r, 1, "8<|im_end|>");
    /* the first span starts right after "<|im_start|>assistant\n" */
    assert_int_equal(r.spans[0].start, strlen("<|im_start|>system\nBe brief.<|im_end|>\n"
                                              "<|im_start|>user\n2+3?<|im_end|>\n"
                                              "<|im_start|>assistant\n"));
    r1_chat_text_release(&r);
    /* a prompt: user turn + generation prompt, no spans */
    assert_int_equal(r1_chat_render(t, chat + 1, 1, true, &r), 0);
    assert_string_equal(r.text, "<|im_start|>user\n2+3?<|im_end|>\n<|im_start|>assistant\n");
    assert_int_equal(r.n_spans, 0);
    r1_chat_text_release(&r);
    char *p = r1_chat_render_prompt(t, "hi");
    assert_string_equal(p, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    free(p);
    r1_chat_template_free(t);
}

static void test_deepseek_r1(void **state)
{
    (void)state;
    struct r1_chat_template *t = open_t("deepseek-r1");
    assert_true(t->has_end_marker);
    struct r1_chat_text r;
    assert_int_equal(r1_chat_render(t, chat, 5, false, &r), 0);
    assert_string_equal(r.text, "<｜begin▁of▁sentence｜>Be brief.<｜User｜>2+3?<｜Assistant｜>5"
                                "<｜end▁of▁sentence｜><｜User｜>and 4+4?<｜Assistant｜>8"
                                "<｜end▁of▁sentence｜>");
    assert_int_equal(r.n_spans, 2);
    span_is(&r, 0, "5<｜end▁of▁sentence｜>");
    span_is(&r, 1, "8<｜end▁of▁sentence｜>");
    r1_chat_text_release(&r);
    char *p = r1_chat_render_prompt(t, "What is 2+3?");
    assert_string_equal(p, "<｜begin▁of▁sentence｜><｜User｜>What is 2+3?<｜Assistant｜><think>\n");
    free(p);
    /* the last system message goes right after BOS wherever it stands; think parts stay */
    const struct r1_chat_message m[] = {
        MSG("user", "hi"), MSG("system", "A."), MSG("assistant", "<think>\nx</think>y"),
        MSG("system", "B.")};
    assert_int_equal(r1_chat_render(t, m, 4, true, &r), 0);
    assert_string_equal(r.text, "<｜begin▁of▁sentence｜>B.<｜User｜>hi<｜Assistant｜><think>\nx"
                                "</think>y<｜end▁of▁sentence｜><｜Assistant｜><think>\n");
    assert_int_equal(r.n_spans, 1);
    span_is(&r, 0, "<think>\nx</think>y<｜end▁of▁sentence｜>");
    r1_chat_text_release(&r);
    /* no messages: BOS and the generation prompt, as the Jinja template renders */
    assert_int_equal(r1_chat_render(t, NULL, 0, true, &r), 0);
    assert_string_equal(r.text, "<｜begin▁of▁sentence｜><｜Assistant｜><think>\n");
    r1_chat_text_release(&r);
    r1_chat_template_free(t);
}

static void test_llama3(void **state)
{
    (void)state;
    struct r1_chat_template *t = open_t("llama3");
    assert_true(t->has_end_marker);
    struct r1_chat_text r;
    assert_int_equal(r1_chat_render(t, chat, 5, true, &r), 0);
    assert_string_equal(r.text, "<|begin_of_text|>"
                                "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                                "<|start_header_id|>user<|end_header_id|>\n\n2+3?<|eot_id|>"
                                "<|start_header_id|>assistant<|end_header_id|>\n\n5<|eot_id|>"
                                "<|start_header_id|>user<|end_header_id|>\n\nand 4+4?<|eot_id|>"
                                "<|start_header_id|>assistant<|end_header_id|>\n\n8<|eot_id|>"
                                "<|start_header_id|>assistant<|end_header_id|>\n\n");
    assert_int_equal(r.n_spans, 2);
    span_is(&r, 0, "5<|eot_id|>");
    span_is(&r, 1, "8<|eot_id|>");
    /* hand-counted: BOS 17; a header is 19 + role + 19 ("<|end_header_id|>\n\n"); eot 10 */
    assert_int_equal(r.spans[0].start,
                     17 + (19 + 6 + 19 + 9 + 10) + (19 + 4 + 19 + 4 + 10) + (19 + 9 + 19));
    r1_chat_text_release(&r);
    /* content is trimmed (Jinja's | trim), the span holds the trimmed text */
    const struct r1_chat_message m[] = {MSG("user", " \n hi\t"), MSG("assistant", "\n ok \n")};
    assert_int_equal(r1_chat_render(t, m, 2, false, &r), 0);
    assert_string_equal(r.text, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi"
                                "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nok"
                                "<|eot_id|>");
    span_is(&r, 0, "ok<|eot_id|>");
    assert_int_equal(r.spans[0].end, r.len);
    r1_chat_text_release(&r);
    /* BOS comes with the first message: none without messages */
    assert_int_equal(r1_chat_render(t, NULL, 0, true, &r), 0);
    assert_string_equal(r.text, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    r1_chat_text_release(&r);
    r1_chat_template_free(t);
}

#define ZERO_PRE                                                                                   \
    "A conversation between User and Assistant. The user asks a question, and the Assistant "      \
    "solves it. The assistant first thinks about the reasoning process in the mind and then "      \
    "provides the user with the answer. The reasoning process and answer are enclosed within "     \
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning "         \
    "process here </think> <answer> answer here </answer>."

static void test_r1_zero(void **state)
{
    (void)state;
    struct r1_chat_template *t = open_t("r1-zero");
    assert_false(t->has_end_marker);
    struct r1_chat_text r;
    assert_int_equal(r1_chat_render(t, chat, 5, true, &r), 0);
    assert_string_equal(r.text, "Be brief. User: 2+3? Assistant:\n5 User: and 4+4? Assistant:\n8"
                                " Assistant:\n");
    assert_int_equal(r.n_spans, 2);
    span_is(&r, 0, "5");
    span_is(&r, 1, "8");
    assert_int_equal(r.spans[0].start, strlen("Be brief. User: 2+3? Assistant:\n"));
    r1_chat_text_release(&r);
    /* without a system message the paper's preamble; "." after a bare question */
    const struct r1_chat_message m[] = {MSG("user", "Add 2 and 3"), MSG("assistant", "<think>")};
    assert_int_equal(r1_chat_render(t, m, 2, false, &r), 0);
    assert_string_equal(r.text, ZERO_PRE " User: Add 2 and 3. Assistant:\n<think>");
    span_is(&r, 0, "<think>");
    r1_chat_text_release(&r);
    /* one user turn + generation prompt is the r1-zero prompt template, byte for byte */
    const char *qs[] = {"What is 2+3?", "Add 2 and 3", "", "Stop."};
    for (int i = 0; i < 4; i++) {
        char *a = r1_chat_render_prompt(t, qs[i]);
        char *b = r1_prompt_template_apply("r1-zero", qs[i]);
        assert_non_null(a);
        assert_non_null(b);
        assert_string_equal(a, b);
        free(a);
        free(b);
    }
    r1_chat_template_free(t);
}

/* Reads tests/fixtures/chat-templates.txt: a line "@@ EXPECT NAME" starts each template. */
static void test_detect(void **state)
{
    (void)state;
    const char *src = getenv("R1_SRC");
    char path[4096];
    snprintf(path, sizeof(path), "%s/tests/fixtures/chat-templates.txt", src ? src : ".");
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *want[] = {"chatml", "chatml", "llama3", "llama3", "deepseek-r1", "none", "none"};
    /* the default system message each adds (SmolLM2, Qwen2.5; the others have none) */
    const char *want_sys[] = {"You are a helpful AI assistant named SmolLM, trained by Hugging Face",
                              "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
                              NULL, NULL, NULL, NULL, NULL};
    int k = 0;
    char *p = strstr(text, "\n@@ EXPECT ");
    while (p) {
        p++;
        char name[32];
        assert_int_equal(sscanf(p, "@@ EXPECT %31s", name), 1);
        char *body = strchr(p, '\n') + 1, *next = strstr(body, "\n@@ EXPECT ");
        if (next)
            next[0] = '\0';
        assert_true(k < 7);
        assert_string_equal(name, want[k]);
        const char *got = r1_chat_template_detect(body);
        if (strcmp(name, "none") == 0)
            assert_null(got);
        else
            assert_string_equal(got ? got : "(null)", name);
        char *sys = r1_chat_template_default_system(body);
        if (want_sys[k])
            assert_string_equal(sys ? sys : "(null)", want_sys[k]);
        else
            assert_null(sys);
        free(sys);
        k++;
        p = next;
    }
    assert_int_equal(k, 7);
    assert_null(r1_chat_template_detect(NULL));
    assert_null(r1_chat_template_detect(""));
    assert_string_equal(r1_chat_template_detect("{{ 'A conversation between User and Assistant."
                                                " ...' }}"), "r1-zero");
}

/* A model's default system message opens a chat without one, as apply_chat_template does. */
static void test_default_system(void **state)
{
    (void)state;
    const char *smol = "{% for message in messages %}{% if loop.first and messages[0]['role'] != "
                       "'system' %}{{ '<|im_start|>system\nYou are SmolLM<|im_end|>\n' }}"
                       "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
                       "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}";
    struct r1_chat_template *t = NULL;
    assert_int_equal(r1_chat_template_open_model(&t, "chatml", smol), 0);
    struct r1_chat_message m[3] = {{"user", "hi", 2}, {"assistant", "yo", 2}, {"user", "ok", 2}};
    struct r1_chat_text r;
    assert_int_equal(r1_chat_render(t, m, 2, false, &r), 0);
    const char *want = "<|im_start|>system\nYou are SmolLM<|im_end|>\n<|im_start|>user\nhi"
                       "<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n";
    assert_string_equal(r.text, want);
    assert_int_equal(r.n_spans, 1);
    size_t at = strlen(want) - strlen("yo<|im_end|>\n");
    assert_int_equal(r.spans[0].start, at);
    assert_int_equal(r.spans[0].end, at + strlen("yo<|im_end|>"));
    r1_chat_text_release(&r);
    /* a conversation that opens with a system message keeps its own */
    struct r1_chat_message s[2] = {{"system", "Be brief.", 9}, {"user", "hi", 2}};
    assert_int_equal(r1_chat_render(t, s, 2, true, &r), 0);
    assert_string_equal(r.text, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"
                                "hi<|im_end|>\n<|im_start|>assistant\n");
    r1_chat_text_release(&r);
    r1_chat_template_free(t);
    /* another template than the model's own, or no model template: none added */
    const char *jinjas[] = {smol, NULL};
    const char *names[] = {"llama3", "chatml"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(r1_chat_template_open_model(&t, names[i], jinjas[i]), 0);
        assert_int_equal(r1_chat_render(t, &m[2], 1, false, &r), 0);
        assert_null(strstr(r.text, "SmolLM"));
        r1_chat_text_release(&r);
        r1_chat_template_free(t);
    }
    /* an escaped newline in the literal counts; an expression inside does not */
    char *sys = r1_chat_template_default_system("{{ '<|im_start|>system\\nHi there.<|im_end|>' }}");
    assert_string_equal(sys ? sys : "(null)", "Hi there.");
    free(sys);
    assert_null(r1_chat_template_default_system("{{ '<|im_start|>system\n' + x + '<|im_end|>' }}"));
}

static void test_resolve(void **state)
{
    (void)state;
    const char *name = "x";
    const char *chatml = "{{'<|im_start|>' + m['role'] + '\n'}}";
    assert_int_equal(r1_chat_template_resolve(NULL, NULL, &name), 0);
    assert_null(name);
    assert_int_equal(r1_chat_template_resolve("auto", chatml, &name), 0);
    assert_string_equal(name, "chatml");
    assert_int_equal(r1_chat_template_resolve(NULL, chatml, &name), 0);
    assert_string_equal(name, "chatml");
    assert_int_equal(r1_chat_template_resolve("none", chatml, &name), 0);
    assert_null(name);
    assert_int_equal(r1_chat_template_resolve("llama3", chatml, &name), 0); /* override */
    assert_string_equal(name, "llama3");
    assert_int_equal(r1_chat_template_resolve("auto", "{{ '<start_of_turn>' }}", &name),
                     R1_EINVAL);
    assert_null(name);
    assert_non_null(strstr(r1_err_last(), "not one r1 recognises"));
    assert_int_equal(r1_chat_template_resolve("vicuna", NULL, &name), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "'vicuna'"));
}

static void test_plain(void **state)
{
    (void)state;
    struct r1_chat_template *t = open_t("plain");
    assert_false(t->has_end_marker);
    struct r1_chat_text r;
    assert_int_equal(r1_chat_render(t, chat, 5, true, &r), 0);
    assert_string_equal(r.text, "System: Be brief.\nUser: 2+3?\nAssistant: 5\n"
                                "User: and 4+4?\nAssistant: 8\nAssistant: ");
    assert_int_equal(r.n_spans, 2);
    span_is(&r, 0, "5");
    span_is(&r, 1, "8");
    r1_chat_text_release(&r);
    /* empty content: an empty span at the right place */
    const struct r1_chat_message m[] = {MSG("user", "x"), MSG("assistant", "")};
    assert_int_equal(r1_chat_render(t, m, 2, false, &r), 0);
    assert_string_equal(r.text, "User: x\nAssistant: \n");
    assert_int_equal(r.n_spans, 1);
    assert_int_equal(r.spans[0].start, strlen("User: x\nAssistant: "));
    assert_int_equal(r.spans[0].end, r.spans[0].start);
    r1_chat_text_release(&r);
    /* content with embedded bytes is copied by length, not to a NUL */
    const struct r1_chat_message z[] = {{"assistant", "a\0b", 3}};
    assert_int_equal(r1_chat_render(t, z, 1, false, &r), 0);
    assert_int_equal(r.len, strlen("Assistant: ") + 3 + 1);
    assert_memory_equal(r.text + r.spans[0].start, "a\0b", 3);
    r1_chat_text_release(&r);
    r1_chat_template_free(t);
}

static void test_errors(void **state)
{
    (void)state;
    struct r1_chat_template *t = NULL;
    assert_int_equal(r1_chat_template_open(&t, "llama-9"), R1_EINVAL);
    assert_null(t);
    assert_non_null(strstr(r1_err_last(), "'llama-9'"));
    assert_non_null(strstr(r1_err_last(), "chatml, deepseek-r1, llama3, plain, r1-zero"));
    assert_int_equal(r1_chat_template_open(&t, NULL), R1_EINVAL);
    t = open_t("chatml");
    const struct r1_chat_message m[] = {MSG("user", "x"), MSG("tool", "y")};
    struct r1_chat_text r;
    assert_int_equal(r1_chat_render(t, m, 2, false, &r), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "message 2: role 'tool'"));
    assert_null(r.text);
    /* no messages: just the generation prompt */
    assert_int_equal(r1_chat_render(t, NULL, 0, true, &r), 0);
    assert_string_equal(r.text, "<|im_start|>assistant\n");
    r1_chat_text_release(&r);
    r1_chat_template_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chatml),
        cmocka_unit_test(test_deepseek_r1),
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_r1_zero),
        cmocka_unit_test(test_detect),
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_default_system),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
