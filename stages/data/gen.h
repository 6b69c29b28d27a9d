/* gen.h - built-in deterministic generators of reasoning tasks (arith, countdown) and of
 * preference pairs on them (prefs: "prompt", "chosen", "rejected"; see gen.c).
 *
 * A generator spec is "NAME" or "NAME:key=value,key=value" (difficulty knobs, see
 * r1_datagen_help).  Example i of (spec, seed, split) is a pure function of those four
 * values.  Train and eval splits are disjoint by construction: every problem belongs to
 * exactly one split by a hash of its canonical text, so no seed or size can make them
 * overlap.  Each example is one JSON object with "prompt" (the bare question), "answer"
 * (the reference) and task fields (countdown: "numbers", "target"); with demo=1 in the
 * spec it also carries "text": the templated prompt followed by a worked completion in
 * the <think>…</think> <answer>…</answer> format, for pretraining corpora (noise=F makes
 * that fraction of the demonstrations end in a wrong answer). */
#ifndef R1_STAGES_GEN_H
#define R1_STAGES_GEN_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

enum r1_split { R1_SPLIT_TRAIN = 0, R1_SPLIT_EVAL };

/* "train" or "eval". */
const char *r1_split_name(enum r1_split s);

struct r1_datagen; /* a parsed spec */

/* Parses spec; R1_EINVAL naming the bad part ("countdown: numbers=9 is out of range
 * [3, 6]") and listing what is allowed. */
int r1_datagen_parse(struct r1_datagen **out, const char *spec);
void r1_datagen_free(struct r1_datagen *g);
/* Generator names and knobs, one line each, for --help and docs. */
const char *r1_datagen_help(void);

/* Example i of the split (a new JSON object, caller owns it). */
int r1_datagen_example(const struct r1_datagen *g, uint64_t seed, enum r1_split split,
                       int64_t i, json_t **out);
/* Examples 0..n-1 as JSONL into f. */
int r1_datagen_write(const struct r1_datagen *g, uint64_t seed, enum r1_split split, int64_t n,
                     FILE *f);

#endif
