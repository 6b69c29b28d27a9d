/* sample.c - `r1 sample`: generate text from a model (a .gguf file or an HF directory).
 *
 * Text goes to stdout as it is produced when one sequence is in flight (one prompt, -n 1),
 * else one block per sample, or one JSON object per sample with --json.  Prompts come
 * from --prompt or a JSONL file (--prompts): each line {"prompt": TEXT} or a chat
 * {"messages": [{"role", "content"}, ...]}.  With --chat (or --template NAME) a prompt is
 * rendered as one user turn with the chat template plus its generation prompt, and a chat
 * line is rendered whole plus the generation prompt; a chat line needs a template.  The
 * template is --template NAME, else the model's own (an error asking for --template when
 * r1 recognises none). */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmds.h"
#include "cmd/opt.h"
#include "core/backend.h"
#include "core/err.h"
#include "core/generate.h"
#include "core/template.h"

struct sample_out {
    const struct r1_tokenizer *tok;
    bool stream; /* print tokens as they come (single sequence in flight) */
};

static void on_token(void *user, int req, int32_t t)
{
    struct sample_out *o = user;
    (void)req;
    if (!o->stream)
        return;
    if (t < 0) {
        fputc('\n', stdout);
        fflush(stdout);
        return;
    }
    size_t len = 0;
    const char *p = o->tok->ops->piece(o->tok, t, &len);
    if (p)
        fwrite(p, 1, len, stdout);
    fflush(stdout);
}

/* Copies text to a fresh NUL-terminated string that is valid UTF-8: every byte
 * that does not start a well-formed sequence becomes U+FFFD (as Python's
 * errors="replace"), so a model's raw bytes can go into JSON. */
static char *utf8_sanitize(const char *s, size_t n)
{
    char *out = malloc(3 * n + 1), *o = out;
    if (!out)
        return NULL;
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        int len = *p < 0x80 ? 1 : (*p >> 5) == 6 ? 2 : (*p >> 4) == 14 ? 3 : (*p >> 3) == 30 ? 4 : 0;
        int ok = len > 0 && p + len <= end && (len != 2 || *p >= 0xC2);
        for (int i = 1; ok && i < len; i++)
            ok = (p[i] & 0xC0) == 0x80;
        if (ok && len == 3) { /* no overlongs, no surrogates */
            ok = !(*p == 0xE0 && p[1] < 0xA0) && !(*p == 0xED && p[1] >= 0xA0);
        } else if (ok && len == 4) {
            ok = !(*p == 0xF0 && p[1] < 0x90) && !(*p == 0xF4 && p[1] >= 0x90) && *p <= 0xF4;
        }
        if (ok && !(len == 1 && *p == 0)) {
            memcpy(o, p, (size_t)len);
            o += len;
            p += len;
        } else {
            memcpy(o, "\xEF\xBF\xBD", 3);
            o += 3;
            p++;
        }
    }
    *o = '\0';
    return out;
}

/* The messages of a chat line into a fresh array (*out, the caller frees it; its strings
 * point into msgs); R1_EINVAL with the reason. */
static int chat_messages(const json_t *msgs, struct r1_chat_message **out, int *n)
{
    size_t count = json_array_size(msgs);
    *out = calloc(count ? count : 1, sizeof(**out));
    if (!*out)
        return r1_err_set(R1_ENOMEM, "out of memory");
    for (size_t i = 0; i < count; i++) {
        const json_t *m = json_array_get(msgs, i);
        const char *role = json_string_value(json_object_get(m, "role"));
        const json_t *content = json_object_get(m, "content");
        if (!role || !json_is_string(content))
            return r1_err_set(R1_EINVAL, "'messages' must be a list of {role, content} "
                              "(item %zu is not)", i + 1);
        (*out)[i] = (struct r1_chat_message){role, json_string_value(content),
                                             json_string_length(content)};
    }
    *n = (int)count;
    return 0;
}

/* The prompt text of one JSONL line (strdup'ed or rendered); chat NULL: none. */
static int line_prompt(const json_t *o, const struct r1_chat_template *chat, char **text)
{
    const json_t *msgs = json_object_get(o, "messages");
    const char *p = json_string_value(json_object_get(o, "prompt"));
    *text = NULL;
    if (json_is_array(msgs)) {
        if (!chat)
            return r1_err_set(R1_EINVAL, "a \"messages\" line needs a chat template: add --chat "
                              "or --template NAME");
        struct r1_chat_message *m = NULL;
        int n = 0, rc = chat_messages(msgs, &m, &n);
        struct r1_chat_text r;
        if (!rc && !(rc = r1_chat_render(chat, m, n, true, &r))) {
            free(r.spans);
            *text = r.text;
        }
        free(m);
        return rc;
    }
    if (!p)
        return r1_err_set(R1_EINVAL, "expected a JSON object with a string \"prompt\" or a "
                          "\"messages\" list");
    if (chat)
        return (*text = r1_chat_render_prompt(chat, p)) ? 0 : r1_err_code();
    return (*text = strdup(p)) ? 0 : r1_err_set(R1_ENOMEM, "out of memory");
}

/* The prompt of every line of a JSONL file into *out. */
static int read_prompts(const char *path, const struct r1_chat_template *chat, char ***out,
                        int *n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return r1_err_set(R1_EINVAL, "%s: cannot open the prompts file", path);
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0;
    *out = NULL;
    *n = 0;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == strlen(line))
            continue;
        json_error_t e;
        json_t *o = json_loads(line, 0, &e);
        char *text = NULL;
        rc = o ? line_prompt(o, chat, &text)
               : r1_err_set(R1_EINVAL, "bad JSON (%s) at column %d", e.text, e.column);
        json_decref(o);
        if (rc) {
            rc = r1_err_wrap(rc, "%s:%d", path, lineno);
            break;
        }
        char **grown = realloc(*out, (size_t)(*n + 1) * sizeof(char *));
        if (!grown) {
            free(text);
            rc = r1_err_set(R1_ENOMEM, "out of memory reading %s", path);
            break;
        }
        *out = grown;
        (*out)[(*n)++] = text;
    }
    free(line);
    fclose(f);
    if (!rc && *n == 0)
        rc = r1_err_set(R1_EINVAL, "%s: no prompts in the file", path);
    return rc;
}

int cmd_sample(int argc, char **argv)
{
    const char *model = NULL, *prompt = NULL, *prompts_file = NULL, *template_ = NULL;
    const char *dtype_name = NULL;
    int dtype = R1_F32;
    int n = 1, max_tokens = 128, top_k = 0, slots = 16, threads = 0;
    float temperature = 1.0f, top_p = 1.0f, min_p = 0.0f;
    uint64_t seed = 0;
    bool json = false, chat_flag = false;
    const struct r1_option opts[] = {
        {R1_OPT_STRING, "model", 0, &model, "PATH", "a .gguf file or HF model directory"},
        {R1_OPT_STRING, "prompt", 0, &prompt, "TEXT", "prompt text"},
        {R1_OPT_STRING, "prompts", 0, &prompts_file, "FILE", "JSONL: {\"prompt\": TEXT} or {\"messages\": [...]} per line"},
        {R1_OPT_FLAG, "chat", 0, &chat_flag, NULL, "render prompts with the model's chat template"},
        {R1_OPT_STRING, "template", 0, &template_, "NAME", "chat template to use (implies --chat)"},
        {R1_OPT_INT, "n", 'n', &n, "N", "samples per prompt (default 1)"},
        {R1_OPT_FLOAT, "temperature", 0, &temperature, "T", "sampling temperature; 0 = greedy (default 1)"},
        {R1_OPT_INT, "top-k", 0, &top_k, "K", "keep the K most likely tokens (default off)"},
        {R1_OPT_FLOAT, "top-p", 0, &top_p, "P", "nucleus sampling mass (default 1 = off)"},
        {R1_OPT_FLOAT, "min-p", 0, &min_p, "P", "drop tokens below P times the top probability"},
        {R1_OPT_INT, "max-tokens", 0, &max_tokens, "M", "new tokens per sample (default 128)"},
        {R1_OPT_U64, "seed", 0, &seed, "S", "sampling seed (default 0)"},
        {R1_OPT_INT, "slots", 0, &slots, "S", "sequences decoded together (default 16)"},
        {R1_OPT_INT, "threads", 0, &threads, "N", "CPU threads (default: all)"},
        {R1_OPT_STRING, "dtype", 0, &dtype_name, "T", "generation weights: f32 (default) or bf16 (faster decoding)"},
        {R1_OPT_FLAG, "json", 0, &json, NULL, "one JSON object per sample instead of text"},
        {R1_OPT_END, NULL, 0, NULL, NULL, NULL},
    };
    const char *pos[1];
    int npos = 0;
    int rc = r1_opt_parse("sample", "--model DIR (--prompt TEXT | --prompts FILE) [options]",
                          "Generates text from a model with a KV cache and continuous batching.",
                          opts, argc, argv, pos, 0, &npos);
    if (rc)
        return rc == R1_OPT_HELP ? 0 : rc;
    if (!model || (!prompt == !prompts_file)) {
        fprintf(stderr, "r1 sample: needs --model DIR and one of --prompt TEXT or --prompts FILE\n");
        return 2;
    }
    if (n < 1 || max_tokens < 1 || slots < 1) {
        fprintf(stderr, "r1 sample: -n, --max-tokens and --slots must be at least 1\n");
        return 2;
    }
    struct r1_sampling sp = {temperature, top_k, top_p, min_p};
    if ((rc = r1_sampling_check(&sp)) || (rc = cmd_gen_dtype(dtype_name, &dtype)))
        return cmd_fail("sample", rc);

    char **texts = NULL;
    int n_texts = 0;
    struct r1_backend *be = NULL;
    struct r1_model *m = NULL;
    struct r1_tokenizer *tok = NULL;
    struct r1_generator *g = NULL;
    struct r1_chat_template *chat = NULL;
    struct r1_gen_request *reqs = NULL;
    struct r1_gen_result *res = NULL;
    int32_t **ids = NULL, *tokbuf = NULL;
    float *lpbuf = NULL;
    int n_reqs = 0;

    if ((rc = r1_backend_create(&be, R1_BACKEND_CPU, threads)) ||
        (rc = cmd_model_open(model, be, &m, &tok)))
        goto out;
    if ((chat_flag || template_) && (rc = cmd_chat_template_open(&chat, template_, tok, model)))
        goto out;
    if (prompt) {
        texts = malloc(sizeof(char *));
        if (!texts) {
            rc = r1_err_set(R1_ENOMEM, "out of memory");
            goto out;
        }
        texts[0] = chat ? r1_chat_render_prompt(chat, prompt) : strdup(prompt);
        n_texts = 1;
        if (!texts[0]) {
            rc = chat ? r1_err_code() : r1_err_set(R1_ENOMEM, "out of memory");
            goto out;
        }
    } else if ((rc = read_prompts(prompts_file, chat, &texts, &n_texts))) {
        goto out;
    }

    n_reqs = n_texts * n;
    reqs = calloc((size_t)n_reqs, sizeof(*reqs));
    res = calloc((size_t)n_reqs, sizeof(*res));
    ids = calloc((size_t)n_texts, sizeof(*ids));
    tokbuf = malloc((size_t)n_reqs * max_tokens * sizeof(int32_t));
    lpbuf = malloc((size_t)n_reqs * max_tokens * sizeof(float));
    if (!reqs || !res || !ids || !tokbuf || !lpbuf) {
        rc = r1_err_set(R1_ENOMEM, "out of memory for %d samples", n_reqs);
        goto out;
    }
    int max_prompt = 0;
    for (int i = 0; i < n_texts; i++) {
        int len = 0;
        if ((rc = r1_tokenizer_encode(tok, texts[i], strlen(texts[i]), &ids[i], &len)))
            goto out;
        if (len == 0) { /* an empty prompt starts from BOS, or end-of-text */
            int32_t start = tok->bos_id >= 0 ? tok->bos_id : tok->eos_id;
            int32_t *one = realloc(ids[i], sizeof(int32_t));
            if (!one) {
                rc = r1_err_set(R1_ENOMEM, "out of memory");
                goto out;
            }
            ids[i] = one;
            ids[i][0] = start;
            len = 1;
        }
        if (len > max_prompt)
            max_prompt = len;
        for (int j = 0; j < n; j++) {
            struct r1_gen_request *r = &reqs[i * n + j];
            r->prompt = ids[i];
            r->prompt_len = len;
            r->stream = (uint64_t)(i * n + j);
        }
    }
    for (int i = 0; i < n_reqs; i++) {
        res[i].tokens = tokbuf + (size_t)i * max_tokens;
        res[i].logprobs = lpbuf + (size_t)i * max_tokens;
    }
    int max_len = max_prompt + max_tokens;
    if (max_len > m->cfg.max_seq_len) {
        rc = r1_err_set(R1_EINVAL, "the longest prompt (%d tokens) plus --max-tokens %d exceeds "
                        "the model's context of %d; lower --max-tokens", max_prompt, max_tokens,
                        m->cfg.max_seq_len);
        goto out;
    }
    if (slots > n_reqs)
        slots = n_reqs;
    if ((rc = r1_generator_create(&g, m, tok, slots, max_len, slots + 256)))
        goto out;
    int32_t stop_ids[2];
    int n_stop = 0;
    if (m->cfg.eos_id >= 0)
        stop_ids[n_stop++] = m->cfg.eos_id;
    struct r1_gen_config gc = {sp, max_tokens, seed, stop_ids, n_stop, NULL, 0, dtype};
    struct sample_out so = {tok, !json && n_reqs == 1};
    if (so.stream) {
        fputs(texts[0], stdout);
        fflush(stdout);
    }
    if ((rc = r1_generate(g, &gc, reqs, n_reqs, res, on_token, &so)))
        goto out;
    for (int i = 0; i < n_reqs && !so.stream; i++) {
        char *text = NULL;
        size_t len = 0;
        if ((rc = r1_tokenizer_decode(tok, res[i].tokens, res[i].n, &text, &len)))
            goto out;
        const char *finish = res[i].finish == R1_FINISH_STOP ? "stop" : "length";
        if (json) {
            double lp = 0;
            for (int t = 0; t < res[i].n; t++)
                lp += res[i].logprobs[t];
            char *ptext = utf8_sanitize(texts[i / n], strlen(texts[i / n]));
            char *ctext = utf8_sanitize(text, len);
            json_t *o = ptext && ctext
                            ? json_pack("{s:s, s:i, s:s, s:i, s:s, s:f}", "prompt", ptext, "sample",
                                        i % n, "completion", ctext, "tokens", res[i].n,
                                        "finish_reason", finish, "logprob", lp)
                            : NULL;
            char *line = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
            free(ptext);
            free(ctext);
            json_decref(o);
            if (!line) {
                free(text);
                rc = r1_err_set(R1_ENOMEM, "out of memory formatting sample %d", i);
                goto out;
            }
            printf("%s\n", line);
            free(line);
        } else {
            printf("=== prompt %d sample %d (%s, %d tokens)\n%s", i / n, i % n, finish, res[i].n,
                   texts[i / n]);
            fwrite(text, 1, len, stdout);
            printf("\n");
        }
        free(text);
    }
out:
    r1_generator_free(g);
    r1_chat_template_free(chat);
    for (int i = 0; ids && i < n_texts; i++)
        free(ids[i]);
    for (int i = 0; texts && i < n_texts; i++)
        free(texts[i]);
    free(texts);
    free(ids);
    free(reqs);
    free(res);
    free(tokbuf);
    free(lpbuf);
    r1_tokenizer_free(tok);
    r1_model_free(m);
    r1_backend_free(be);
    return rc ? cmd_fail("sample", rc) : 0;
}
