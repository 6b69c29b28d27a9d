/* template.h - chat templates: a list of messages {role, content} rendered to the text a
 * chat model sees, with the byte spans of what the assistant says.
 *
 * A template is a table of functions plus ctx (like the tokenizer).  r1 has no Jinja
 * engine: a model's Jinja "chat_template" picks one of these built-ins
 * (r1_chat_template_detect).  Built-in names:
 *   chatml       <|im_start|>{role}\n{content}<|im_end|>\n  (SmolLM2, Qwen2.5; their
 *                default system message via r1_chat_template_open_model); generation prompt
 *                "<|im_start|>assistant\n"
 *   deepseek-r1  <｜begin▁of▁sentence｜>{system}<｜User｜>{content}<｜Assistant｜>{content}
 *                <｜end▁of▁sentence｜> (the R1-Distill models); the last system message's
 *                content goes right after the BOS text wherever it stands; generation
 *                prompt "<｜Assistant｜><think>\n".  Unlike the released Jinja, earlier
 *                assistant turns keep their <think> part (it is what sft learns).
 *   llama3       <|begin_of_text|> (when there are messages), then per message
 *                <|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>,
 *                content trimmed of surrounding ASCII whitespace (Llama-3-Instruct; no
 *                default system text); generation prompt the assistant header
 *   plain        "System: …\n", "User: …\n", "Assistant: …\n"; generation prompt
 *                "Assistant: "; no end-of-turn marker
 *   r1-zero      the DeepSeek-R1-Zero text: its preamble ("A conversation between User and
 *                Assistant. … <answer> answer here </answer>.", replaced by the last system
 *                message when there is one), then " User: {content}." (the '.' dropped
 *                after content ending in . ? or !) and " Assistant:\n{content}" per turn;
 *                generation prompt " Assistant:\n"; no end-of-turn marker.  One user turn
 *                plus the generation prompt is exactly the r1-zero prompt template.
 * Other messages render in the order given.
 *
 * Spans: [start, end) byte offsets into the rendered text, one per assistant message,
 * covering its content and its end-of-turn marker ("<|im_end|>", not the "\n" after it):
 * exactly the text a model must learn to produce.  A template without a marker
 * (has_end_marker false) leaves the end of a turn to the caller: the sft corpus puts the
 * tokenizer's EOS token there. */
#ifndef R1_TEMPLATE_H
#define R1_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

struct r1_chat_message {
    const char *role;    /* "system", "user" or "assistant" */
    const char *content; /* len bytes (need not be NUL-terminated) */
    size_t len;
};

struct r1_chat_span {
    size_t start, end; /* bytes [start, end) of the rendered text */
};

/* A rendering: text (NUL-terminated, len bytes) and the assistant spans, all owned. */
struct r1_chat_text {
    char *text;
    size_t len;
    struct r1_chat_span *spans;
    int n_spans;
};

struct r1_chat_template;

struct r1_chat_template_ops {
    /* Renders msgs[0..n) into *out (zeroed by the caller); add_generation_prompt appends
     * the text that opens an assistant turn.  R1_EINVAL names the bad message. */
    int (*render)(const struct r1_chat_template *t, const struct r1_chat_message *msgs, int n,
                  bool add_generation_prompt, struct r1_chat_text *out);
    void (*release)(struct r1_chat_template *t); /* frees ctx; may be NULL */
};

struct r1_chat_template {
    const struct r1_chat_template_ops *ops;
    void *ctx;
    const char *name;
    bool has_end_marker; /* assistant turns end in a marker inside their span */
};

/* The built-in template called name; R1_EINVAL listing the names when unknown. */
int r1_chat_template_open(struct r1_chat_template **out, const char *name);
/* The built-in template name as a model whose Jinja template is model_jinja (may be NULL)
 * renders it: when name is the template detected from model_jinja and that Jinja adds a
 * default system message to a conversation that does not open with one (SmolLM2's "You
 * are a helpful AI assistant named SmolLM...", Qwen2.5's "You are Qwen..."), the template
 * adds it too, as transformers' apply_chat_template does.  Else r1_chat_template_open. */
int r1_chat_template_open_model(struct r1_chat_template **out, const char *name,
                                const char *model_jinja);
/* The default system message of a ChatML Jinja template (a literal
 * '<|im_start|>system\n…<|im_end|>' with no expression inside), malloc'd; NULL when it
 * has none. */
char *r1_chat_template_default_system(const char *jinja);
void r1_chat_template_free(struct r1_chat_template *t);
/* "chatml, deepseek-r1, llama3, plain, r1-zero" (for messages and help). */
const char *r1_chat_template_names(void);

/* The built-in template that renders like a model's Jinja chat_template (the string of
 * tokenizer_config.json or a GGUF's tokenizer.chat_template), by its markers:
 * "<｜Assistant｜>" deepseek-r1, "<|start_header_id|>" llama3, "<|im_start|>" chatml,
 * the R1-Zero preamble r1-zero.  NULL when jinja is NULL or none matches. */
const char *r1_chat_template_detect(const char *jinja);

/* What a setting (model.chat_template, --template) means for a model whose Jinja template
 * is model_jinja (NULL: it has none): *name is a built-in name, or NULL for no chat
 * template.  "none" → NULL; NULL or "auto" → r1_chat_template_detect(model_jinja), NULL
 * without one, R1_EINVAL when the model has one r1 does not recognise; a built-in name →
 * itself; anything else R1_EINVAL listing the names.  *name is static. */
int r1_chat_template_resolve(const char *setting, const char *model_jinja, const char **name);

int r1_chat_render(const struct r1_chat_template *t, const struct r1_chat_message *msgs, int n,
                   bool add_generation_prompt, struct r1_chat_text *out);
void r1_chat_text_release(struct r1_chat_text *r);

/* One user turn followed by the generation prompt, as a malloc'd string (NULL with the
 * error set on failure): what a generating stage feeds a chat model. */
char *r1_chat_render_prompt(const struct r1_chat_template *t, const char *user);

#endif
