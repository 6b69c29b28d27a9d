/* tokenizer-json.c - Hugging Face tokenizer.json (+ tokenizer_config.json) to and from the
 * BPE tokenizer (see tokenizer.h, docs/tokenizer.md).
 *
 * Read: model BPE (vocab; merges as "a b" strings or [a, b] pairs; ignore_merges),
 * added_tokens (all matched verbatim before BPE), normalizer null / NFC / Sequence of NFC,
 * pre_tokenizer Split (Regex or String, Isolated) / Digits / ByteLevel / Sequence of them.
 * Anything else is R1_EFORMAT naming the file and what it met.  Strings from the JSON are
 * borrowed while the document is alive; r1_tokenizer_bpe_create copies what it keeps. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/file.h"
#include "core/tokenizer.h"

#define MAX_PRETOK 16

struct load { /* what one tokenizer.json read owns besides the JSON document */
    const char *path;
    const char **tokens;
    bool *special;
    const char **merges;
    char **owned; /* joined merge pairs and escaped String patterns */
    int n_owned, cap_owned;
    struct r1_pretok pretok[MAX_PRETOK];
    int n_pretok;
    bool byte_level;
};

static char *keep(struct load *l, char *s)
{
    if (!s)
        return NULL;
    if (l->n_owned == l->cap_owned) {
        int cap = l->cap_owned ? l->cap_owned * 2 : 64;
        char **g = realloc(l->owned, sizeof(char *) * (size_t)cap);
        if (!g) {
            free(s);
            return NULL;
        }
        l->owned = g;
        l->cap_owned = cap;
    }
    return l->owned[l->n_owned++] = s;
}

/* A String split pattern as a regex: every ASCII punctuation char escaped. */
static char *escape_literal(const char *s)
{
    char *out = malloc(strlen(s) * 2 + 1), *o = out;
    if (!out)
        return NULL;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x80 && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                          (c >= 'A' && c <= 'Z') || c == ' '))
            *o++ = '\\';
        *o++ = *s;
    }
    *o = '\0';
    return out;
}

static int add_pretok(struct load *l, const json_t *p, int depth)
{
    if (json_is_null(p))
        return 0;
    const char *type = json_string_value(json_object_get(p, "type"));
    if (!type || depth > 4)
        return r1_err_set(R1_EFORMAT, "%s: pre_tokenizer has no \"type\"", l->path);
    if (strcmp(type, "Sequence") == 0) {
        size_t i;
        json_t *q;
        json_array_foreach (json_object_get(p, "pretokenizers"), i, q) {
            int rc = add_pretok(l, q, depth + 1);
            if (rc)
                return rc;
        }
        return 0;
    }
    if (l->n_pretok == MAX_PRETOK)
        return r1_err_set(R1_EFORMAT, "%s: more than %d pre-tokenizers", l->path, MAX_PRETOK);
    struct r1_pretok *t = &l->pretok[l->n_pretok];
    memset(t, 0, sizeof(*t));
    if (strcmp(type, "Split") == 0) {
        const json_t *pat = json_object_get(p, "pattern");
        const char *behavior = json_string_value(json_object_get(p, "behavior"));
        const char *re = json_string_value(json_object_get(pat, "Regex"));
        const char *lit = json_string_value(json_object_get(pat, "String"));
        if (!behavior || strcmp(behavior, "Isolated") != 0 ||
            json_is_true(json_object_get(p, "invert")) || (!re && !lit))
            return r1_err_set(R1_EFORMAT,
                              "%s: pre_tokenizer Split with behavior '%s'%s is not "
                              "supported (r1 reads Isolated, not inverted, with a "
                              "Regex or String pattern)",
                              l->path, behavior ? behavior : "(none)",
                              json_is_true(json_object_get(p, "invert")) ? " inverted" : "");
        t->kind = R1_PRETOK_SPLIT;
        t->pattern = re ? re : keep(l, escape_literal(lit));
        if (!t->pattern)
            return r1_err_set(R1_ENOMEM, "%s: out of memory", l->path);
    } else if (strcmp(type, "Digits") == 0) {
        t->kind = R1_PRETOK_DIGITS;
        t->individual_digits = json_is_true(json_object_get(p, "individual_digits"));
    } else if (strcmp(type, "ByteLevel") == 0) {
        if (json_is_true(json_object_get(p, "add_prefix_space")))
            return r1_err_set(R1_EFORMAT,
                              "%s: pre_tokenizer ByteLevel with add_prefix_space "
                              "true is not supported",
                              l->path);
        const json_t *ur = json_object_get(p, "use_regex");
        t->kind = R1_PRETOK_BYTELEVEL;
        t->use_regex = !ur || json_is_true(ur); /* default true */
        l->byte_level = true;
    } else {
        return r1_err_set(R1_EFORMAT,
                          "%s: pre_tokenizer type '%s' is not supported (r1 reads "
                          "Split, Digits, ByteLevel and Sequence)",
                          l->path, type);
    }
    l->n_pretok++;
    return 0;
}

static int read_normalizer(const struct load *l, const json_t *n, bool *nfc, int depth)
{
    if (!n || json_is_null(n))
        return 0;
    const char *type = json_string_value(json_object_get(n, "type"));
    if (type && strcmp(type, "NFC") == 0) {
        *nfc = true;
        return 0;
    }
    if (type && strcmp(type, "Sequence") == 0 && depth < 4) {
        size_t i;
        json_t *q;
        json_array_foreach (json_object_get(n, "normalizers"), i, q) {
            int rc = read_normalizer(l, q, nfc, depth + 1);
            if (rc)
                return rc;
        }
        return 0;
    }
    return r1_err_set(R1_EFORMAT,
                      "%s: normalizer type '%s' is not supported (r1 reads none, "
                      "NFC, or a Sequence of NFC)",
                      l->path, type ? type : "(none)");
}

static int read_merges(struct load *l, const json_t *arr, int *n)
{
    *n = (int)json_array_size(arr);
    l->merges = calloc((size_t)(*n ? *n : 1), sizeof(char *));
    if (!l->merges)
        return r1_err_set(R1_ENOMEM, "%s: out of memory for %d merges", l->path, *n);
    for (int i = 0; i < *n; i++) {
        const json_t *m = json_array_get(arr, (size_t)i);
        if (json_is_string(m)) {
            l->merges[i] = json_string_value(m);
            continue;
        }
        const char *a = json_string_value(json_array_get(m, 0));
        const char *b = json_string_value(json_array_get(m, 1));
        if (!a || !b || json_array_size(m) != 2)
            return r1_err_set(R1_EFORMAT, "%s: model.merges[%d] is neither \"a b\" nor [a, b]",
                              l->path, i);
        size_t la = strlen(a), lb = strlen(b);
        char *s = keep(l, malloc(la + lb + 2));
        if (!s)
            return r1_err_set(R1_ENOMEM, "%s: out of memory for merges", l->path);
        memcpy(s, a, la);
        s[la] = ' ';
        memcpy(s + la + 1, b, lb + 1);
        l->merges[i] = s;
    }
    return 0;
}

/* Vocabulary + added tokens into l->tokens / l->special (dense ids 0..n-1). */
static int read_vocab(struct load *l, const json_t *vocab, const json_t *added, int *n_out)
{
    int n = 0;
    const char *key;
    json_t *v;
    size_t i;
    json_object_foreach ((json_t *)vocab, key, v) {
        json_int_t id = json_integer_value(v);
        if (!json_is_integer(v) || id < 0 || id >= (1 << 24))
            return r1_err_set(R1_EFORMAT, "%s: model.vocab[\"%s\"] is not a token id", l->path,
                              key);
        n = (int)id + 1 > n ? (int)id + 1 : n;
    }
    json_array_foreach (added, i, v) {
        json_int_t id = json_integer_value(json_object_get(v, "id"));
        if (!json_is_string(json_object_get(v, "content")) || id < 0 || id >= (1 << 24))
            return r1_err_set(R1_EFORMAT, "%s: added_tokens[%zu] needs an id and a content",
                              l->path, i);
        n = (int)id + 1 > n ? (int)id + 1 : n;
    }
    l->tokens = calloc((size_t)(n ? n : 1), sizeof(char *));
    l->special = calloc((size_t)(n ? n : 1), sizeof(bool));
    if (!l->tokens || !l->special)
        return r1_err_set(R1_ENOMEM, "%s: out of memory for %d tokens", l->path, n);
    json_object_foreach ((json_t *)vocab, key, v)
        l->tokens[json_integer_value(v)] = key;
    json_array_foreach (added, i, v) {
        json_int_t id = json_integer_value(json_object_get(v, "id"));
        l->tokens[id] = json_string_value(json_object_get(v, "content"));
        l->special[id] = true;
    }
    for (int id = 0; id < n; id++)
        if (!l->tokens[id])
            return r1_err_set(R1_EFORMAT,
                              "%s: token id %d is in neither model.vocab nor "
                              "added_tokens (r1 needs ids 0..%d without gaps)",
                              l->path, id, n - 1);
    *n_out = n;
    return 0;
}

/* "bos_token": "<s>" or {"content": "<s>", ...} or null -> id, -1 when absent. */
static int config_token(const struct r1_tokenizer *tok, const json_t *cfg, const char *name,
                        const char *path, int32_t *id)
{
    const json_t *v = json_object_get(cfg, name);
    const char *text =
        json_is_object(v) ? json_string_value(json_object_get(v, "content")) : json_string_value(v);
    if (!text)
        return 0;
    *id = r1_tokenizer_lookup(tok, text);
    if (*id < 0)
        return r1_err_set(R1_EFORMAT, "%s: %s \"%s\" is not a token of the tokenizer", path, name,
                          text);
    return 0;
}

/* bos/eos/pad and chat_template; a missing file is no error (the tokenizer keeps -1s). */
static int read_config(struct r1_tokenizer *tok, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    fclose(f);
    json_error_t jerr;
    json_t *cfg = json_load_file(path, 0, &jerr);
    if (!cfg || !json_is_object(cfg)) {
        json_decref(cfg);
        return r1_err_set(R1_EFORMAT, "%s: not a JSON object (line %d: %s)", path, jerr.line,
                          cfg ? "top level" : jerr.text);
    }
    int rc = config_token(tok, cfg, "bos_token", path, &tok->bos_id);
    if (!rc)
        rc = config_token(tok, cfg, "eos_token", path, &tok->eos_id);
    if (!rc)
        rc = config_token(tok, cfg, "pad_token", path, &tok->pad_id);
    const json_t *ct = json_object_get(cfg, "chat_template");
    const char *tmpl = json_string_value(ct);
    if (json_is_array(ct)) { /* [{name, template}, ...]: "default", else the first */
        size_t i;
        json_t *e;
        json_array_foreach (ct, i, e) {
            const char *name = json_string_value(json_object_get(e, "name"));
            if (i == 0 || (name && strcmp(name, "default") == 0))
                tmpl = json_string_value(json_object_get(e, "template"));
        }
    }
    if (!rc && tmpl && !(tok->chat_template = strdup(tmpl)))
        rc = r1_err_set(R1_ENOMEM, "%s: out of memory for the chat template", path);
    json_decref(cfg);
    return rc;
}

static int check_model(const struct load *l, const json_t *model)
{
    const char *type = json_string_value(json_object_get(model, "type"));
    if (!json_is_object(model) || (type && strcmp(type, "BPE") != 0) ||
        !json_is_object(json_object_get(model, "vocab")) ||
        !json_is_array(json_object_get(model, "merges")))
        return r1_err_set(R1_EFORMAT,
                          "%s: model type '%s' is not supported (r1 reads byte-level "
                          "BPE with model.vocab and model.merges)",
                          l->path, type ? type : "(none)");
    const char *pre = json_string_value(json_object_get(model, "continuing_subword_prefix"));
    const char *suf = json_string_value(json_object_get(model, "end_of_word_suffix"));
    const json_t *drop = json_object_get(model, "dropout");
    if (json_is_true(json_object_get(model, "byte_fallback")) || (pre && *pre) || (suf && *suf) ||
        (json_is_number(drop) && json_number_value(drop) > 0))
        return r1_err_set(R1_EFORMAT,
                          "%s: BPE with byte_fallback, a subword prefix or suffix, "
                          "or dropout is not supported",
                          l->path);
    return 0;
}

static bool decoder_is_byte_level(const json_t *d)
{
    const char *type = json_string_value(json_object_get(d, "type"));
    if (type && strcmp(type, "ByteLevel") == 0)
        return true;
    size_t i;
    json_t *q;
    json_array_foreach (json_object_get(d, "decoders"), i, q)
        if (decoder_is_byte_level(q))
            return true;
    return false;
}

int r1_tokenizer_json_load(struct r1_tokenizer **out, const char *tokenizer_json,
                           const char *tokenizer_config_json)
{
    *out = NULL;
    struct load l = {.path = tokenizer_json};
    struct r1_tokenizer *tok = NULL;
    char *text = NULL;
    size_t len;
    json_t *root = NULL;
    int rc = r1_file_read(tokenizer_json, &text, &len);
    if (rc)
        goto out;
    json_error_t jerr;
    root = json_loadb(text, len, 0, &jerr);
    if (!json_is_object(root)) {
        rc = r1_err_set(R1_EFORMAT, "%s: not a JSON object (line %d column %d: %s)", tokenizer_json,
                        jerr.line, jerr.column, root ? "top level" : jerr.text);
        goto out;
    }
    const json_t *model = json_object_get(root, "model");
    struct r1_bpe_spec spec = {.bos_id = -1, .eos_id = -1, .pad_id = -1};
    if ((rc = check_model(&l, model)) ||
        (rc = read_vocab(&l, json_object_get(model, "vocab"), json_object_get(root, "added_tokens"),
                         &spec.n_vocab)) ||
        (rc = read_merges(&l, json_object_get(model, "merges"), &spec.n_merges)) ||
        (rc = read_normalizer(&l, json_object_get(root, "normalizer"), &spec.nfc, 0)) ||
        (rc = add_pretok(&l, json_object_get(root, "pre_tokenizer"), 0)))
        goto out;
    if (!l.byte_level && !decoder_is_byte_level(json_object_get(root, "decoder"))) {
        rc = r1_err_set(R1_EFORMAT,
                        "%s: not a byte-level BPE (neither pre_tokenizer nor decoder "
                        "is ByteLevel); r1 reads byte-level BPE only",
                        tokenizer_json);
        goto out;
    }
    spec.tokens = l.tokens;
    spec.special = l.special;
    spec.merges = l.merges;
    spec.pretok = l.pretok;
    spec.n_pretok = l.n_pretok;
    spec.ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    if ((rc = r1_tokenizer_bpe_create(&tok, &spec))) {
        rc = r1_err_wrap(rc, "%s", tokenizer_json);
        goto out;
    }
    if (tokenizer_config_json && (rc = read_config(tok, tokenizer_config_json)))
        goto out;
    *out = tok;
    tok = NULL;
out:
    r1_tokenizer_free(tok);
    for (int i = 0; i < l.n_owned; i++)
        free(l.owned[i]);
    free(l.owned);
    free(l.tokens);
    free(l.special);
    free(l.merges);
    json_decref(root);
    free(text);
    return rc;
}

/* --- writing ---------------------------------------------------------------------------- */

static json_t *pretok_json(const struct r1_pretok *p)
{
    switch (p->kind) {
    case R1_PRETOK_SPLIT:
        return json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "Regex",
                         p->pattern, "behavior", "Isolated", "invert", 0);
    case R1_PRETOK_DIGITS:
        return json_pack("{s:s, s:b}", "type", "Digits", "individual_digits",
                         (int)p->individual_digits);
    case R1_PRETOK_BYTELEVEL:
        break;
    }
    return json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0,
                     "trim_offsets", 1, "use_regex", (int)p->use_regex);
}

static json_t *tokenizer_doc(const struct r1_bpe_spec *s)
{
    json_t *vocab = json_object(), *merges = json_array(), *added = json_array();
    json_t *pre = json_array();
    bool has_bl = false, ok = vocab && merges && added && pre;
    for (int i = 0; ok && i < s->n_vocab; i++)
        if (!s->special || !s->special[i])
            ok = json_object_set_new(vocab, s->tokens[i], json_integer(i)) == 0;
    for (int i = 0; ok && i < s->n_vocab; i++) {
        if (!s->special || !s->special[i])
            continue;
        if (!json_object_get(vocab, s->tokens[i])) /* a merge may make it: keep it in vocab */
            ok = json_object_set_new(vocab, s->tokens[i], json_integer(i)) == 0;
        json_t *a =
            json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", i, "content", s->tokens[i],
                      "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1);
        ok = ok && a && json_array_append_new(added, a) == 0;
    }
    for (int i = 0; ok && i < s->n_merges; i++)
        ok = json_array_append_new(merges, json_string(s->merges[i])) == 0;
    for (int i = 0; ok && i < s->n_pretok; i++) {
        has_bl |= s->pretok[i].kind == R1_PRETOK_BYTELEVEL;
        ok = json_array_append_new(pre, pretok_json(&s->pretok[i])) == 0;
    }
    if (ok && !has_bl) { /* Hugging Face maps bytes in the ByteLevel pre-tokenizer */
        struct r1_pretok bl = {.kind = R1_PRETOK_BYTELEVEL, .use_regex = false};
        ok = json_array_append_new(pre, pretok_json(&bl)) == 0;
    }
    if (!ok) {
        json_decref(vocab);
        json_decref(merges);
        json_decref(added);
        json_decref(pre);
        return NULL;
    }
    return json_pack(
        "{s:s, s:n, s:n, s:o, s:o, s:{s:s, s:o}, s:{s:s, s:b, s:b, s:b}, "
        "s:{s:s, s:b, s:b, s:b}, s:{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:o, s:o}}",
        "version", "1.0", "truncation", "padding", "added_tokens", added, "normalizer",
        s->nfc ? json_pack("{s:s}", "type", "NFC") : json_null(), "pre_tokenizer", "type",
        "Sequence", "pretokenizers", pre, "post_processor", "type", "ByteLevel", "add_prefix_space",
        0, "trim_offsets", 0, "use_regex", 0, "decoder", "type", "ByteLevel", "add_prefix_space", 1,
        "trim_offsets", 1, "use_regex", 1, "model", "type", "BPE", "dropout", "unk_token",
        "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0,
        "ignore_merges", (int)s->ignore_merges, "vocab", vocab, "merges", merges);
}

static json_t *token_or_null(const struct r1_bpe_spec *s, int32_t id)
{
    return id >= 0 ? json_string(s->tokens[id]) : json_null();
}

static int write_json(const char *dir, const char *name, json_t *doc)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int rc = r1_file_write_json(path, doc, JSON_INDENT(2));
    json_decref(doc);
    return rc;
}

int r1_tokenizer_json_save(const struct r1_tokenizer *tok, const char *dir)
{
    struct r1_bpe_spec s;
    int rc = r1_tokenizer_bpe_spec(tok, &s);
    if (rc)
        return r1_err_wrap(rc, "saving the tokenizer to %s", dir);
    if ((rc = write_json(dir, "tokenizer.json", tokenizer_doc(&s))))
        return rc;
    json_t *cfg =
        json_pack("{s:s, s:b, s:b, s:o, s:o, s:o, s:b}", "tokenizer_class",
                  "PreTrainedTokenizerFast", "add_bos_token", 0, "add_eos_token", 0, "bos_token",
                  token_or_null(&s, s.bos_id), "eos_token", token_or_null(&s, s.eos_id),
                  "pad_token", token_or_null(&s, s.pad_id), "clean_up_tokenization_spaces", 0);
    if (cfg && tok->chat_template &&
        json_object_set_new(cfg, "chat_template", json_string(tok->chat_template))) {
        json_decref(cfg);
        cfg = NULL;
    }
    return write_json(dir, "tokenizer_config.json", cfg);
}
