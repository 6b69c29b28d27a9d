/* corpus.h - training data for the next-token (pretrain) and completion (sft) losses.
 *
 * A corpus is a list of tokenised examples.  Two shapes:
 *  - documents (pretrain): each document's tokens followed by EOS, concatenated into one
 *    stream and cut into windows of T+1 tokens (packing).  Inside a window every
 *    document is its own attention segment with positions restarting at 0; the target of
 *    the last token of a document (the one after its EOS) is masked.
 *  - pairs (sft): a prompt part and scored parts per example; only scored tokens are
 *    targets.  Forms (JSONL): prompt/completion (the prompt_template applied to the
 *    prompt, then, with a chat template, rendered as one user + one assistant turn), or a
 *    chat in the messages field (needs a chat template; every assistant turn is scored:
 *    its content and end-of-turn marker).  Every piece is tokenised on its own, so token
 *    boundaries fall on the spans' edges with any tokenizer.  When the chat template has
 *    no end marker (or there is none), EOS follows each scored part and is scored; text
 *    after the last scored part is dropped (it would be no one's target).
 *    Unpacked: one example per row, padded to T (truncated when longer).  Packed: the
 *    examples of the epoch's order fill rows greedily (a row ends when the next example
 *    does not fit or the epoch ends); each example is its own attention segment with
 *    positions from 0, and targets never cross examples.
 * Sources: text (documents separated by blank lines) or JSONL (one example per line,
 * field names configurable).  The corpus remembers the sha256 of the file it read.
 *
 * Order: a sampler visits items (windows or examples) in an order that is a pure function
 * of (seed, epoch) (Philox stream R1_STREAM_DATA + epoch), so its whole state is (epoch,
 * cursor), cursor counting items of the epoch's order. */
#ifndef R1_STAGES_CORPUS_H
#define R1_STAGES_CORPUS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/tokenizer.h"

enum r1_corpus_kind { R1_CORPUS_DOCUMENTS = 0, R1_CORPUS_PAIRS };
enum r1_corpus_format { R1_CORPUS_TEXT = 0, R1_CORPUS_JSONL };

struct r1_corpus_spec {
    const char *path;
    enum r1_corpus_kind kind;
    enum r1_corpus_format format;
    const char *text_field;       /* documents from JSONL (default "text") */
    const char *prompt_field;     /* pairs (default "prompt") */
    const char *completion_field; /* pairs (default "completion") */
    const char *generator;        /* instead of path: a generator spec (stages/data/gen.h),
                                   * read as JSONL; path then only names it in messages */
    int64_t gen_n;
    uint64_t gen_seed;
    /* pairs only; zero values keep the plain prompt/completion behaviour */
    const char *messages_field;  /* JSONL field holding a chat (default "messages") */
    const char *chat_template;   /* a built-in chat template name (core/template.h), or NULL */
    const char *chat_jinja;      /* the model's Jinja template (default system message) or NULL */
    const char *prompt_template; /* applied to prompts (r1_prompt_template_apply), or NULL */
    bool pack;                   /* several examples per row (see above) */
};

struct r1_corpus {
    enum r1_corpus_kind kind;
    int32_t *tokens;      /* all examples' tokens back to back */
    int64_t n_tokens;
    int64_t *start;       /* (n_examples + 1) offsets into tokens */
    int32_t *prompt_len;  /* pairs: tokens before the first scored one of each example */
    int64_t n_examples;
    int32_t *doc;         /* documents: example index of every token */
    char sha256[65];      /* of the source file's bytes */
    uint8_t *scored;      /* pairs: (n_tokens) 1 where the token is a target */
    bool pack;            /* pairs: the sampler packs rows */
};

/* Reads and tokenises spec->path.  Errors name the file and line (R1_EINVAL). */
int r1_corpus_load(struct r1_corpus **out, const struct r1_corpus_spec *spec,
                   const struct r1_tokenizer *tok);
void r1_corpus_free(struct r1_corpus *c);

/* Items the sampler orders: windows of T+1 tokens (documents) or examples (pairs); as
 * many rows per epoch unless the corpus is packed. */
int64_t r1_corpus_rows(const struct r1_corpus *c, int T);

struct r1_sampler {
    const struct r1_corpus *c;
    int T;
    uint64_t seed;
    int64_t epoch, cursor; /* the state a checkpoint saves */
    int64_t n_rows;        /* rows of the current epoch */
    int64_t *order;        /* (n_items) permutation for the current epoch */
    int64_t n_items;       /* r1_corpus_rows: what order permutes, cursor's range */
};

int r1_sampler_init(struct r1_sampler *s, const struct r1_corpus *c, int T, uint64_t seed);
/* Moves to (epoch, cursor), e.g. when resuming. */
int r1_sampler_seek(struct r1_sampler *s, int64_t epoch, int64_t cursor);
void r1_sampler_release(struct r1_sampler *s);
/* Rows in epochs 0..epochs-1: epochs · n_rows unpacked; packed, counted exactly by
 * packing every epoch's order (the same greedy fill r1_sampler_next does). */
int64_t r1_sampler_rows(const struct r1_sampler *s, int64_t epochs);
/* Fills B rows of (B,T) host arrays and advances; a new epoch reshuffles.
 * weights (B,T): 1 where a target is scored, else 0.  Returns tokens scored. */
int64_t r1_sampler_next(struct r1_sampler *s, int B, int32_t *tokens, int32_t *pos, int32_t *seg,
                        int32_t *targets, float *weights);

#endif
