/* test-template.c - built-in chat templates: exact text, assistant spans, generation
 * prompts, errors. */
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
    assert_string_equal(p, "<｜begin▁of▁sentence｜><｜User｜>What is 2+3?<｜Assistant｜>");
    free(p);
    r1_chat_template_free(t);
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
    assert_non_null(strstr(r1_err_last(), "chatml, deepseek-r1, plain"));
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
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
