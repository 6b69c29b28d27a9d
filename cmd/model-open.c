/* model-open.c - how the commands that read a model (sample, tokenize, eval) open it (a
 * .gguf file or a Hugging Face directory, core/modelfile.h), pick its chat template
 * (--template, else the one the tokenizer's Jinja template names) and read --dtype.  Errors
 * are set, never printed. */
#include <stddef.h>
#include <string.h>

#include "cmd/cmds.h"
#include "core/err.h"
#include "core/modelfile.h"
#include "core/template.h"
#include "core/tensor.h"

int cmd_model_open(const char *path, struct r1_backend *be, struct r1_model **m,
                   struct r1_tokenizer **tok)
{
    if (m)
        return r1_model_open(m, tok, be, path);
    return r1_tokenizer_open(tok, path);
}

int cmd_gen_dtype(const char *name, int *out)
{
    if (!name || strcmp(name, "f32") == 0)
        *out = R1_F32;
    else if (strcmp(name, "bf16") == 0)
        *out = R1_BF16;
    else
        return r1_err_set(R1_EINVAL, "--dtype is f32 or bf16 (the generation weights), not "
                          "'%s'", name);
    return 0;
}

int cmd_chat_template_open(struct r1_chat_template **out, const char *setting,
                           const struct r1_tokenizer *tok, const char *model_path)
{
    const char *model_jinja = tok ? tok->chat_template : NULL;
    const char *name = NULL;
    *out = NULL;
    int rc = r1_chat_template_resolve(setting, model_jinja, &name);
    if (rc)
        return r1_err_wrap(rc, "%s: --template", model_path);
    if (!name)
        return r1_err_set(R1_EINVAL, "%s: the model has no chat template r1 recognises; give "
                          "--template NAME (%s)", model_path, r1_chat_template_names());
    return r1_chat_template_open_model(out, name, model_jinja);
}
