/* model-open.c - how the commands that read a model (sample, tokenize, eval) open it and
 * pick its chat template: the one place to change when models open another way (a .gguf
 * file, the tokenizer's own Jinja template).  Errors are set, never printed. */
#include <stddef.h>

#include "cmd/cmds.h"
#include "core/err.h"
#include "core/hfdir.h"
#include "core/template.h"

int cmd_model_open(const char *path, struct r1_backend *be, struct r1_model **m,
                   struct r1_tokenizer **tok)
{
    *tok = NULL;
    if (m) {
        *m = NULL;
        int rc = r1_hfdir_load(m, be, path);
        if (rc)
            return rc;
    }
    int rc = r1_hfdir_load_tokenizer(tok, path);
    if (rc && m) {
        r1_model_free(*m);
        *m = NULL;
    }
    return rc;
}

int cmd_chat_template_open(struct r1_chat_template **out, const char *setting,
                           const struct r1_tokenizer *tok, const char *model_path)
{
    (void)tok; /* its Jinja template joins here once the tokenizer carries one */
    const char *model_jinja = NULL;
    const char *name = NULL;
    *out = NULL;
    int rc = r1_chat_template_resolve(setting, model_jinja, &name);
    if (rc)
        return r1_err_wrap(rc, "%s: --template", model_path);
    if (!name)
        return r1_err_set(R1_EINVAL, "%s: the model has no chat template r1 recognises; give "
                          "--template NAME (%s)", model_path, r1_chat_template_names());
    return r1_chat_template_open(out, name);
}
