/* optim.c - AdamW with global-norm clipping and LR schedules (see optim.h). */
#include "core/optim.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/safetensors.h"

void r1_optim_config_default(struct r1_optim_config *c)
{
    memset(c, 0, sizeof(*c));
    c->lr = 3e-4f;
    c->min_lr = 0.0f;
    c->beta1 = 0.9f;
    c->beta2 = 0.95f;
    c->eps = 1e-8f;
    c->weight_decay = 0.1f;
    c->max_grad_norm = 1.0f;
    c->schedule = R1_LR_CONSTANT;
    c->grad_bucket_mb = 25.0f; /* PyTorch DDP's bucket_cap_mb */
}

int r1_optim_config_check(const struct r1_optim_config *c)
{
    if (!(c->lr > 0 && c->lr < 10))
        return r1_err_set(R1_EINVAL, "optimizer: lr %g must be in (0, 10)", c->lr);
    if (!(c->min_lr >= 0 && c->min_lr <= c->lr))
        return r1_err_set(R1_EINVAL, "optimizer: min_lr %g must be in [0, lr]", c->min_lr);
    if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1))
        return r1_err_set(R1_EINVAL, "optimizer: betas (%g, %g) must be in [0, 1)", c->beta1,
                          c->beta2);
    if (!(c->eps > 0 && c->eps < 1))
        return r1_err_set(R1_EINVAL, "optimizer: eps %g must be in (0, 1)", c->eps);
    if (!(c->weight_decay >= 0 && c->weight_decay < 10))
        return r1_err_set(R1_EINVAL, "optimizer: weight_decay %g must be in [0, 10)",
                          c->weight_decay);
    if (!isfinite(c->max_grad_norm))
        return r1_err_set(R1_EINVAL, "optimizer: max_grad_norm must be finite (<= 0 disables)");
    if (!(c->grad_bucket_mb >= 0 && c->grad_bucket_mb <= 65536))
        return r1_err_set(R1_EINVAL, "optimizer: grad_bucket_mb %g must be in [0, 65536]",
                          c->grad_bucket_mb);
    if (c->warmup_steps < 0)
        return r1_err_set(R1_EINVAL, "optimizer: warmup_steps %" PRId64 " must be >= 0",
                          c->warmup_steps);
    if (c->schedule != R1_LR_CONSTANT && c->total_steps <= c->warmup_steps)
        return r1_err_set(R1_EINVAL,
                          "optimizer: %s schedule needs total_steps (%" PRId64
                          ") > warmup_steps (%" PRId64 ")",
                          r1_lr_schedule_name(c->schedule), c->total_steps, c->warmup_steps);
    return 0;
}

static const char *const schedule_names[] = {"constant", "cosine", "linear"};

const char *r1_lr_schedule_name(enum r1_lr_schedule s)
{
    return (unsigned)s < 3 ? schedule_names[s] : "?";
}

int r1_lr_schedule_parse(enum r1_lr_schedule *out, const char *name)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(name, schedule_names[i]) == 0) {
            *out = (enum r1_lr_schedule)i;
            return 0;
        }
    return r1_err_set(R1_EINVAL, "unknown lr schedule '%s'; use constant, cosine or linear", name);
}

float r1_optim_lr(const struct r1_optim_config *c, int64_t step)
{
    if (step < c->warmup_steps)
        return c->lr * (float)(step + 1) / (float)c->warmup_steps;
    if (c->schedule == R1_LR_CONSTANT)
        return c->lr;
    double span = (double)(c->total_steps - c->warmup_steps);
    double t = (double)(step - c->warmup_steps) / span;
    if (t > 1)
        t = 1;
    double f = c->schedule == R1_LR_COSINE ? 0.5 * (1.0 + cos(M_PI * t)) : 1.0 - t;
    return (float)(c->min_lr + (c->lr - c->min_lr) * f);
}

int r1_optim_create(struct r1_optim **out, struct r1_model *m, const struct r1_optim_config *c)
{
    int rc = r1_optim_config_check(c);
    if (rc)
        return rc;
    if (m->frozen)
        return r1_err_set(R1_ESTATE, "optimizer: the model is frozen (forward-only)");
    struct r1_optim *o = calloc(1, sizeof(*o));
    if (!o)
        return r1_err_set(R1_ENOMEM, "optimizer: out of host memory");
    o->cfg = *c;
    o->m = m;
    for (int i = 0; i < m->n_tensors; i++) /* one offset per tensor, in both arenas */
        if ((float *)m->tensors[i].w.data - m->param_mem !=
            (float *)m->tensors[i].g.data - m->grad_mem) {
            free(o);
            return r1_err_set(R1_ESTATE, "optimizer: parameter and gradient arenas differ in "
                              "layout at %s", m->tensors[i].name);
        }
    if (!(o->ranges = malloc((size_t)(m->n_tensors > 0 ? m->n_tensors : 1) *
                             sizeof(*o->ranges)))) {
        free(o);
        return r1_err_set(R1_ENOMEM, "optimizer: out of host memory");
    }
    /* moments mirror the gradient arena byte for byte, so offsets carry over */
    size_t bytes = m->grads.cap;
    r1_arena_take_bytes(&o->state, bytes);
    r1_arena_take_bytes(&o->state, bytes);
    if ((rc = r1_arena_commit(&o->state, m->be))) {
        free(o->ranges);
        free(o);
        return r1_err_wrap(rc, "optimizer state (%zu bytes)", 2 * bytes);
    }
    o->mom = r1_arena_take_bytes(&o->state, bytes);
    o->var = r1_arena_take_bytes(&o->state, bytes);
    *out = o;
    return 0;
}

void r1_optim_free(struct r1_optim *o)
{
    if (!o)
        return;
    r1_model_set_grad_hook(o->m, NULL, NULL);
    r1_grad_sync_free(o->sync);
    r1_arena_release(&o->state);
    free(o->shard_los);
    free(o->ranges);
    free(o);
}

void r1_optim_last_backward(struct r1_optim *o)
{
    if (!r1_grad_sync_overlaps(o->sync))
        return;
    r1_grad_sync_arm(o->sync);
    r1_model_set_grad_hook(o->m, r1_grad_sync_ready, o->sync);
}

int r1_optim_sum_grads(struct r1_optim *o)
{
    if (!o->sync)
        return 0;
    r1_model_set_grad_hook(o->m, NULL, NULL);
    return r1_grad_sync_finish(o->sync);
}

static int optim_shard(struct r1_optim *o, struct r1_dist *d);

int r1_optim_join(struct r1_optim *o, struct r1_dist *d)
{
    if (!d || d->world <= 1)
        return 0;
    struct r1_model *m = o->m;
    int64_t bucket = (int64_t)((double)o->cfg.grad_bucket_mb * (1 << 20) / sizeof(float));
    int rc = r1_grad_sync_create(&o->sync, d, m->be, m->grad_mem,
                                 (int64_t)(m->grads.cap / sizeof(float)),
                                 o->cfg.grad_bucket_mb > 0 && bucket < 1 ? 1 : bucket);
    if (rc || o->cfg.zero == 0)
        return rc;
    return optim_shard(o, d);
}

static int optim_shard(struct r1_optim *o, struct r1_dist *d)
{
    const struct r1_model *m = o->m; /* the gather works on the parameter arena, whose
                                       * layout is the gradients' (r1_optim_create) */
    int64_t n = (int64_t)(m->grads.cap / sizeof(float)), W = d->world;
    int64_t per = (n + W - 1) / W;
    o->shard_los = malloc(2 * (size_t)W * sizeof(int64_t));
    if (!o->shard_los)
        return r1_err_set(R1_ENOMEM, "optimizer: out of host memory");
    o->shard_his = o->shard_los + W;
    for (int64_t r = 0; r < W; r++) {
        o->shard_los[r] = r * per < n ? r * per : n;
        o->shard_his[r] = o->shard_los[r] + per < n ? o->shard_los[r] + per : n;
    }
    o->shard_lo = o->shard_los[d->rank];
    o->shard_hi = o->shard_his[d->rank];
    size_t bytes = (size_t)(o->shard_hi - o->shard_lo) * sizeof(float);
    r1_arena_release(&o->state);
    r1_arena_take_bytes(&o->state, bytes);
    r1_arena_take_bytes(&o->state, bytes);
    int rc = r1_arena_commit(&o->state, m->be);
    if (rc)
        return r1_err_wrap(rc, "optimizer shard state (%zu bytes)", 2 * bytes);
    o->mom = r1_arena_take_bytes(&o->state, bytes);
    o->var = r1_arena_take_bytes(&o->state, bytes);
    o->dist = d;
    r1_optim_shard_name(o->shard_file, sizeof(o->shard_file), d->rank, d->world);
    return 0;
}

void r1_optim_shard_name(char *buf, size_t cap, int rank, int world)
{
    snprintf(buf, cap, "optimizer-rank%d-of-%d.safetensors", rank, world);
}

const char *r1_optim_shard_file(const struct r1_optim *o)
{
    return o->dist && o->dist->rank > 0 ? o->shard_file : NULL;
}

double r1_optim_grad_norm(const struct r1_optim *o)
{
    const struct r1_model *m = o->m;
    double ss = 0;
    m->be->ops->sumsq(m->be->ctx, &ss, m->grad_mem, (int64_t)(m->grads.cap / sizeof(float)));
    return sqrt(ss);
}

/* Offset of tensor i's gradient (= its moments) in floats from the arena base. */
static size_t moment_offset(const struct r1_model *m, int i)
{
    return (size_t)((float *)m->tensors[i].g.data - m->grad_mem);
}

int r1_optim_step(struct r1_optim *o)
{
    struct r1_model *m = o->m;
    const struct r1_backend_ops *op = m->be->ops;
    double norm = r1_optim_grad_norm(o);
    o->last_grad_norm = norm;
    int rc = r1_backend_check(m->be);
    if (rc)
        return rc;
    if (!isfinite(norm))
        return r1_err_set(R1_ENUMERIC, "optimizer: gradient norm is %g at update %" PRId64
                          "; the loss diverged (lower the learning rate)", norm, o->step + 1);
    float scale = 1.0f;
    if (o->cfg.max_grad_norm > 0 && norm > o->cfg.max_grad_norm)
        scale = (float)(o->cfg.max_grad_norm / (norm + 1e-6));
    float lr = r1_optim_lr(&o->cfg, o->step);
    o->last_lr = lr;
    int64_t t = o->step + 1;
    /* in bf16 the update writes the bf16 working copy too: current after the step, unless
     * other ranks' shards arrive by the gather below (then it is remade from them) */
    bool fused16 = m->precision == R1_BF16 && m->w16_mem;
    int nr = 0; /* every tensor's part this optimizer updates, in one call */
    for (int i = 0; i < m->n_tensors; i++) {
        const struct r1_param *p = &m->tensors[i];
        int64_t off = (int64_t)moment_offset(m, i), n = r1_tensor_numel(&p->w);
        int64_t a = off, b = off + n, base = 0;
        if (o->dist) {
            a = a > o->shard_lo ? a : o->shard_lo;
            b = b < o->shard_hi ? b : o->shard_hi;
            base = o->shard_lo;
        }
        if (a >= b)
            continue;
        o->ranges[nr++] = (struct r1_adamw_range){a, a - base, b - a,
                                                  p->decay ? o->cfg.weight_decay : 0.0f};
    }
    op->adamw_update(m->be->ctx, m->param_mem, fused16 ? m->w16_mem : NULL, m->grad_mem, o->mom,
                     o->var, o->ranges, nr, lr, o->cfg.beta1, o->cfg.beta2, o->cfg.eps, scale, t);
    if (o->dist) {
        if ((rc = r1_dist_gather_ranges(o->dist, m->be, m->param_mem, o->shard_los,
                                        o->shard_his)))
            return rc;
        r1_model_params_changed(m);
    } else if (fused16) {
        m->w16_fresh = true;
    }
    r1_model_zero_grad(m);
    o->step = t;
    return 0;
}

int r1_optim_save(const struct r1_optim *o, const char *path)
{
    const struct r1_model *m = o->m;
    struct r1_st_writer *w = NULL;
    float *host = malloc(o->state.cap);
    char name[128], stepbuf[32];
    int rc;
    if (!host)
        return r1_err_set(R1_ENOMEM, "%s: out of host memory for optimizer state", path);
    m->be->ops->download(m->be->ctx, host, o->state.base, o->state.cap);
    const float *hm = host, *hv = host + (o->var - o->mom);
    if ((rc = r1_st_writer_create(&w)))
        goto out;
    snprintf(stepbuf, sizeof(stepbuf), "%" PRId64, o->step);
    if ((rc = r1_st_writer_meta(w, "step", stepbuf)) ||
        (rc = r1_st_writer_meta(w, "format", "r1-adamw-1")))
        goto out;
    if (o->dist) { /* one shard: two flat tensors over the range */
        char shard[96];
        int64_t len = o->shard_hi - o->shard_lo;
        snprintf(shard, sizeof(shard), "%" PRId64 " %" PRId64 " %d %d", o->shard_lo, o->shard_hi,
                 o->dist->rank, o->dist->world);
        if ((rc = r1_st_writer_meta(w, "shard", shard)) ||
            (rc = r1_st_writer_add(w, "exp_avg", R1_F32, 1, &len, hm)) ||
            (rc = r1_st_writer_add(w, "exp_avg_sq", R1_F32, 1, &len, hv)))
            goto out;
        rc = r1_st_writer_write(w, path);
        goto out;
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const struct r1_param *p = &m->tensors[i];
        size_t off = moment_offset(m, i);
        snprintf(name, sizeof(name), "exp_avg.%s", p->name);
        if ((rc = r1_st_writer_add(w, name, R1_F32, p->w.ndim, p->w.shape, hm + off)))
            goto out;
        snprintf(name, sizeof(name), "exp_avg_sq.%s", p->name);
        if ((rc = r1_st_writer_add(w, name, R1_F32, p->w.ndim, p->w.shape, hv + off)))
            goto out;
    }
    rc = r1_st_writer_write(w, path);
out:
    r1_st_writer_free(w);
    free(host);
    return rc;
}

/* Reads a shard file of a sharded optimizer (see r1_optim_save) into host (hm, hv). */
static int load_shard(const struct r1_optim *o, struct r1_st_file *f, const char *path, float *hm,
                      float *hv)
{
    const char *shard = r1_st_meta(f, "shard");
    long long lo = -1, hi = -1;
    int rank = -1, world = -1;
    if (!shard || sscanf(shard, "%lld %lld %d %d", &lo, &hi, &rank, &world) != 4)
        return r1_err_set(R1_EFORMAT, "%s: %s; this run shards the optimizer (optimizer.zero 1): "
                          "resume it as it was started", path,
                          shard ? "bad metadata 'shard'" : "not a ZeRO-1 shard");
    if (lo != o->shard_lo || hi != o->shard_hi || rank != o->dist->rank ||
        world != o->dist->world)
        return r1_err_set(R1_EFORMAT, "%s: the shard of rank %d of %d holds floats [%lld, %lld); "
                          "rank %d of %d needs [%" PRId64 ", %" PRId64 ")", path, rank, world, lo,
                          hi, o->dist->rank, o->dist->world, o->shard_lo, o->shard_hi);
    int64_t len = o->shard_hi - o->shard_lo;
    for (int k = 0; k < 2; k++) {
        const char *name = k ? "exp_avg_sq" : "exp_avg";
        const struct r1_st_entry *e = r1_st_find(f, name);
        if (!e)
            return r1_err_set(R1_EFORMAT, "%s: tensor '%s' is missing", path, name);
        int rc = r1_st_read_f32(f, e, k ? hv : hm, len);
        if (rc)
            return rc;
    }
    return 0;
}

int r1_optim_load(struct r1_optim *o, const char *path)
{
    struct r1_model *m = o->m;
    struct r1_st_file *f = NULL;
    float *host = malloc(o->state.cap);
    char name[128], spath[4200];
    int rc;
    if (!host)
        return r1_err_set(R1_ENOMEM, "%s: out of host memory for optimizer state", path);
    float *hm = host, *hv = host + (o->var - o->mom);
    if (r1_optim_shard_file(o)) { /* rank > 0: its own file next to rank 0's */
        const char *slash = strrchr(path, '/');
        int dlen = slash ? (int)(slash - path) : 1;
        snprintf(spath, sizeof(spath), "%.*s/%s", dlen, slash ? path : ".", r1_optim_shard_file(o));
        path = spath;
    }
    if ((rc = r1_st_open(&f, path)))
        goto out;
    const char *step = r1_st_meta(f, "step");
    char *end = NULL;
    long long s = step ? strtoll(step, &end, 10) : -1;
    if (!step || *end || s < 0) {
        rc = r1_err_set(R1_EFORMAT, "%s: missing or bad metadata 'step'; the optimizer state is "
                        "corrupt, resume from an earlier checkpoint", path);
        goto out;
    }
    if (o->dist) {
        if (!(rc = load_shard(o, f, path, hm, hv)))
            goto done;
        goto out;
    }
    if (r1_st_meta(f, "shard")) {
        rc = r1_err_set(R1_EFORMAT, "%s: a ZeRO-1 shard, but this run does not shard the "
                        "optimizer; resume with the recipe and process count it was started with",
                        path);
        goto out;
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const struct r1_param *p = &m->tensors[i];
        size_t off = moment_offset(m, i);
        for (int k = 0; k < 2; k++) {
            snprintf(name, sizeof(name), "%s.%s", k ? "exp_avg_sq" : "exp_avg", p->name);
            const struct r1_st_entry *e = r1_st_find(f, name);
            if (!e) {
                rc = r1_err_set(R1_EFORMAT, "%s: tensor '%s' is missing; the optimizer state does "
                                "not belong to this model", path, name);
                goto out;
            }
            if ((rc = r1_st_read_f32(f, e, (k ? hv : hm) + off, r1_tensor_numel(&p->w))))
                goto out;
        }
    }
done:
    m->be->ops->upload(m->be->ctx, o->state.base, host, o->state.cap);
    o->step = s;
out:
    r1_st_close(f);
    free(host);
    return rc;
}
