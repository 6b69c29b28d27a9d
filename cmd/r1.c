/* r1.c - the r1 binary: the command table and dispatch (git-style). */
#include <stdio.h>
#include <string.h>

#include "cmd/cmds.h"
#include "core/backend.h"
#include "core/err.h"

#ifndef R1_VERSION
#define R1_VERSION "0.0.0"
#endif

struct cmd {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
};

static const struct cmd commands[] = {
    {"init", cmd_init, "create a freshly initialised model directory from a preset shape"},
    {"run", cmd_run, "run a recipe's stages in a run directory"},
    {"resume", cmd_resume, "continue a run from its latest checkpoint"},
    {"status", cmd_status, "show each stage of a run: state, step, checkpoint, loss"},
    {"log", cmd_log, "list a run's checkpoints from its ledger, newest first"},
    {"export", cmd_export, "write a stage's newest checkpoint as a Hugging Face model dir"},
    {"convert", cmd_convert, "convert a GGUF file or HF model dir into an HF model dir"},
    {"sample", cmd_sample, "generate text from a model"},
    {"eval", cmd_eval, "pass@1 and maj@n of a model on prompts with answers"},
    {"tokenize", cmd_tokenize, "text to token ids and back with a model's tokenizer"},
    {"recipe", cmd_recipe, "check, show or list the keys of a recipe"},
    {"report", cmd_report, "write a run's metrics, ledger and samples as one HTML file"},
    {"verify", cmd_verify, "re-hash a run's checkpoints against its ledger"},
    {"data", cmd_data, "generate synthetic task datasets (arith, countdown)"},
};
#define N_COMMANDS (int)(sizeof(commands) / sizeof(commands[0]))

static void print_overview(FILE *f)
{
    fprintf(f, "usage: r1 [--version] [--help] <command> [<args>]\n\n"
               "r1 post-trains language models the way DeepSeek-R1 did (SFT, GRPO, ...),\n"
               "in C with no Python at run time.\n\ncommands:\n");
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n'r1 help <command>' or 'r1 <command> --help' describes a command.\n");
}

int cmd_fail(const char *cmd, int code)
{
    fprintf(stderr, "r1 %s: %s\n", cmd, r1_err_last());
    return r1_err_exit_status(code);
}

static const struct cmd *find(const char *name)
{
    for (int i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        print_overview(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("r1 %s\n%s\n", R1_VERSION, r1_backend_build_info());
        return 0;
    }
    if (strcmp(argv[1], "help") == 0) {
        if (argc < 3) {
            print_overview(stdout);
            return 0;
        }
        const struct cmd *c = find(argv[2]);
        if (!c) {
            fprintf(stderr, "r1: '%s' is not an r1 command (see 'r1 --help')\n", argv[2]);
            return 2;
        }
        char *hargv[] = {(char *)c->name, "--help", NULL};
        return c->fn(2, hargv);
    }
    if (argv[1][0] == '-') {
        fprintf(stderr, "r1: unknown option '%s' (see 'r1 --help')\n", argv[1]);
        return 2;
    }
    const struct cmd *c = find(argv[1]);
    if (!c) {
        fprintf(stderr, "r1: '%s' is not an r1 command (see 'r1 --help')\n", argv[1]);
        return 2;
    }
    return c->fn(argc - 1, argv + 1);
}
