/* generate.c - continuous-batching generation over a KV cache (see generate.h). */
#include "core/generate.h"

#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/rng.h"

#define WINDOW (4 * R1_GEN_MAX_STOP_LEN)

struct slot_state {
    int req;      /* request index, -1 when free */
    int prefilled;/* prompt tokens already in the cache */
    int len;      /* positions filled in the cache */
    int32_t last; /* last sampled token (next decode input) */
    int wlen;     /* bytes in window */
    char window[WINDOW]; /* tail of the generated text, for stop strings */
};

struct r1_generator {
    struct r1_model *m;
    const struct r1_tokenizer *tok;
    struct r1_kv_cache *cache;
    int slots, max_len, step_tokens;
    struct slot_state *st;
    int32_t *tokens, *slot, *pos, *out_idx, *out_slot; /* (step_tokens) */
    /* a step's uniforms and what they drew, (slots): one output per slot at most; drawn
     * by the backend (its op sample), else on the host from logits (slots, V) */
    int device_sampling;
    int sample_vocab; /* ids drawn from: the tokenizer's (a model's vocabulary may be padded) */
    float *u, *next_logprob;
    int32_t *next;
    float *logits;
    struct r1_sample_scratch scratch;
    struct r1_gen_stats stats;
};

int r1_generator_create(struct r1_generator **out, struct r1_model *m,
                        const struct r1_tokenizer *tok, int slots, int max_len, int step_tokens)
{
    if (step_tokens < slots)
        step_tokens = slots;
    struct r1_generator *g = calloc(1, sizeof(*g));
    if (!g)
        return r1_err_set(R1_ENOMEM, "generator: out of host memory");
    g->m = m;
    g->tok = tok;
    g->slots = slots;
    g->max_len = max_len;
    g->step_tokens = step_tokens;
    int rc = r1_kv_cache_create(&g->cache, m, slots, max_len, step_tokens);
    if (rc) {
        free(g);
        return rc;
    }
    int V = m->cfg.vocab_size;
    g->st = calloc((size_t)slots, sizeof(*g->st));
    g->tokens = malloc((size_t)step_tokens * sizeof(int32_t));
    g->slot = malloc((size_t)step_tokens * sizeof(int32_t));
    g->pos = malloc((size_t)step_tokens * sizeof(int32_t));
    g->out_idx = malloc((size_t)step_tokens * sizeof(int32_t));
    g->out_slot = malloc((size_t)step_tokens * sizeof(int32_t));
    g->u = malloc((size_t)slots * sizeof(float));
    g->next = malloc((size_t)slots * sizeof(int32_t));
    g->next_logprob = malloc((size_t)slots * sizeof(float));
    g->device_sampling = m->be->ops->sample != NULL;
    g->sample_vocab = tok && tok->vocab_size > 0 && tok->vocab_size < V ? tok->vocab_size : V;
    int host_ok = 1;
    if (!g->device_sampling) {
        g->logits = malloc((size_t)slots * V * sizeof(float));
        host_ok = g->logits && !r1_sample_scratch_init(&g->scratch, V);
    }
    if (!g->st || !g->tokens || !g->slot || !g->pos || !g->out_idx || !g->out_slot || !g->u ||
        !g->next || !g->next_logprob || !host_ok) {
        r1_generator_free(g);
        return r1_err_set(R1_ENOMEM, "generator: out of host memory");
    }
    *out = g;
    return 0;
}

void r1_generator_free(struct r1_generator *g)
{
    if (!g)
        return;
    r1_kv_cache_free(g->cache);
    r1_sample_scratch_release(&g->scratch);
    free(g->st);
    free(g->tokens);
    free(g->slot);
    free(g->pos);
    free(g->out_idx);
    free(g->out_slot);
    free(g->u);
    free(g->next);
    free(g->next_logprob);
    free(g->logits);
    free(g);
}

struct r1_gen_stats r1_generator_stats(const struct r1_generator *g) { return g->stats; }

int r1_generator_set_graphs(struct r1_generator *g, int on)
{
    return r1_kv_cache_set_graphs(g->cache, on);
}

/* Appends the text of token t to the slot's window; returns 1 when a stop string ends in it. */
static int check_stop_string(const struct r1_generator *g, const struct r1_gen_config *cfg,
                             struct slot_state *s, int32_t t)
{
    if (cfg->n_stop_strings == 0 || !g->tok)
        return 0;
    size_t plen = 0;
    const char *piece = g->tok->ops->piece(g->tok, t, &plen);
    if (!piece || plen == 0)
        return 0;
    if (plen > WINDOW / 2) { /* keep only the tail of a very long piece */
        piece += plen - WINDOW / 2;
        plen = WINDOW / 2;
    }
    if (s->wlen + (int)plen > WINDOW) {
        int keep = WINDOW - (int)plen;
        if (keep > s->wlen)
            keep = s->wlen;
        memmove(s->window, s->window + s->wlen - keep, (size_t)keep);
        s->wlen = keep;
    }
    int old = s->wlen;
    memcpy(s->window + s->wlen, piece, plen);
    s->wlen += (int)plen;
    for (int i = 0; i < cfg->n_stop_strings; i++) {
        int sl = (int)strlen(cfg->stop_strings[i]);
        if (sl == 0 || sl > s->wlen)
            continue;
        /* a match must end inside the new bytes */
        int from = old - sl + 1;
        if (from < 0)
            from = 0;
        for (int p = from; p + sl <= s->wlen; p++)
            if (memcmp(s->window + p, cfg->stop_strings[i], (size_t)sl) == 0)
                return 1;
    }
    return 0;
}

int r1_generate(struct r1_generator *g, const struct r1_gen_config *cfg,
                const struct r1_gen_request *reqs, int n_reqs, struct r1_gen_result *res,
                r1_gen_token_fn on_token, void *user)
{
    int V = g->m->cfg.vocab_size;
    int rc = r1_sampling_check(&cfg->sampling);
    if (rc)
        return rc;
    if (cfg->max_new_tokens <= 0)
        return r1_err_set(R1_EINVAL, "generate: max_new_tokens must be positive");
    for (int i = 0; i < cfg->n_stop_strings; i++)
        if (strlen(cfg->stop_strings[i]) > R1_GEN_MAX_STOP_LEN)
            return r1_err_set(R1_EINVAL, "generate: stop string %d is longer than %d bytes", i,
                              R1_GEN_MAX_STOP_LEN);
    for (int i = 0; i < n_reqs; i++) {
        if (reqs[i].prompt_len < 1)
            return r1_err_set(R1_EINVAL, "generate: prompt %d is empty; a prompt needs at least "
                              "one token (e.g. BOS)", i);
        if (reqs[i].prompt_len + cfg->max_new_tokens > g->max_len)
            return r1_err_set(R1_EINVAL, "generate: prompt %d has %d tokens; with max_new_tokens "
                              "%d it exceeds the context of %d positions", i, reqs[i].prompt_len,
                              cfg->max_new_tokens, g->max_len);
        for (int t = 0; t < reqs[i].prompt_len; t++)
            if (reqs[i].prompt[t] < 0 || reqs[i].prompt[t] >= V)
                return r1_err_set(R1_EINVAL, "generate: prompt %d token %d id %d is not in "
                                  "[0, %d)", i, t, reqs[i].prompt[t], V);
        res[i].n = 0;
        res[i].finish = R1_FINISH_LENGTH;
    }
    if ((rc = r1_kv_cache_set_weights(g->cache, g->m, cfg->weights)))
        return rc;
    memset(&g->stats, 0, sizeof(g->stats));
    for (int s = 0; s < g->slots; s++)
        g->st[s].req = -1;

    int next = 0, active = 0;
    for (;;) {
        /* refill free slots */
        for (int s = 0; s < g->slots && next < n_reqs; s++)
            if (g->st[s].req < 0) {
                memset(&g->st[s], 0, sizeof(g->st[s]));
                g->st[s].req = next++;
                active++;
            }
        if (active == 0)
            break;
        /* build the step: decodes first (one token each), then prefill chunks */
        int N = 0, n_out = 0;
        for (int s = 0; s < g->slots; s++) {
            struct slot_state *st = &g->st[s];
            if (st->req < 0 || st->prefilled < reqs[st->req].prompt_len)
                continue;
            g->tokens[N] = st->last;
            g->slot[N] = s;
            g->pos[N] = st->len;
            g->out_idx[n_out] = N;
            g->out_slot[n_out++] = s;
            st->len++;
            N++;
            g->stats.decode_tokens++;
        }
        for (int s = 0; s < g->slots && N < g->step_tokens; s++) {
            struct slot_state *st = &g->st[s];
            if (st->req < 0)
                continue;
            const struct r1_gen_request *r = &reqs[st->req];
            if (st->prefilled >= r->prompt_len)
                continue;
            int take = r->prompt_len - st->prefilled;
            if (take > g->step_tokens - N)
                take = g->step_tokens - N;
            for (int t = 0; t < take; t++) {
                g->tokens[N] = r->prompt[st->prefilled];
                g->slot[N] = s;
                g->pos[N] = st->len;
                st->prefilled++;
                st->len++;
                N++;
            }
            g->stats.prefill_tokens += take;
            if (st->prefilled == r->prompt_len) {
                g->out_idx[n_out] = N - 1;
                g->out_slot[n_out++] = s;
            }
        }
        /* request i's token number n draws with uniform number n of its own stream */
        for (int o = 0; o < n_out; o++) {
            int i = g->st[g->out_slot[o]].req;
            struct r1_rng rng = r1_rng_make(cfg->seed, R1_STREAM_SAMPLE + reqs[i].stream);
            rng.counter = (uint64_t)res[i].n;
            g->u[o] = r1_rng_uniform(&rng);
        }
        rc = r1_model_decode(g->m, g->cache, N, g->tokens, g->slot, g->pos, n_out, g->out_idx,
                             g->device_sampling ? NULL : g->logits);
        if (!rc && g->device_sampling && n_out > 0)
            rc = r1_kv_cache_sample(g->cache, &cfg->sampling, n_out, g->sample_vocab, g->u,
                                    g->next, g->next_logprob);
        if (rc)
            return rc;
        g->stats.steps++;
        for (int o = 0; o < n_out; o++) {
            struct slot_state *st = &g->st[g->out_slot[o]];
            int i = st->req;
            struct r1_gen_result *out = &res[i];
            if (!g->device_sampling)
                g->next[o] = r1_sample_token(g->logits + (size_t)o * V, g->sample_vocab,
                                             &cfg->sampling, g->u[o], &g->next_logprob[o],
                                             &g->scratch);
            int32_t t = g->next[o];
            out->tokens[out->n] = t;
            out->logprobs[out->n] = g->next_logprob[o];
            out->n++;
            st->last = t;
            if (on_token)
                on_token(user, i, t);
            int stop = 0;
            for (int k = 0; k < cfg->n_stop_ids && !stop; k++)
                stop = (t == cfg->stop_ids[k]);
            if (!stop)
                stop = check_stop_string(g, cfg, st, t);
            if (stop || out->n >= cfg->max_new_tokens) {
                out->finish = stop ? R1_FINISH_STOP : R1_FINISH_LENGTH;
                if (on_token)
                    on_token(user, i, -1);
                st->req = -1;
                active--;
            }
        }
    }
    return 0;
}
