#!/usr/bin/env python3
"""tools/make-tok-fixtures.py - reference fixtures for the BPE tokenizer (tests/test-tokenizer-bpe.c).

Uses Hugging Face `tokenizers` as the independent reference.  Writes into tests/fixtures/tok/:
  qwen2/tokenizer.json, qwen2/tokenizer_config.json   a small BPE trained here, Qwen2-style:
      NFC, Split(Qwen2 regex, Isolated) + ByteLevel(use_regex=false), specials <|endoftext|>,
      <|im_start|>, <|im_end|> (ids 0-2), a chat_template
  qwen2-cases.json                                      {text, ids, decoded} per case
  llama3/tokenizer.json, llama3/tokenizer_config.json  Llama-3-style: no normalizer,
      Split(Llama-3 regex) + ByteLevel(use_regex=false), ignore_merges, specials added after
      the vocabulary, one non-special added token
  llama3-cases.json
  smollm2-cases.json  (only when the SmolLM2 GGUF is present) ids from a tokenizer built from
      the GGUF's tokenizer.ggml.* arrays: Digits(individual) + ByteLevel(use_regex=true),
      control tokens as special added tokens
The trained tokenizers depend on the training text: the repo's docs/*.md and core/*.c at the
time of the run plus the multilingual lines below; the committed files are one such run.

Regenerate:  python3 tools/make-tok-fixtures.py            (from the repo root)
Needs:       pip install tokenizers gguf numpy               (tools/setup --tests)
"""
import glob
import json
import os
import sys

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, trainers

FORMAT = "r1-tok-cases"
VERSION = 1
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
             r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
CHAT_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                 "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
                 "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

TRAIN_EXTRA = [
    "The quick brown fox jumps over the lazy dog. It's what they'll say; we've seen it.",
    "机器学习是人工智能的一个分支。我们今天学习分词器。你好，世界！",
    "التعلم الآلي هو فرع من فروع الذكاء الاصطناعي. مرحبا بالعالم",
    "मशीन लर्निंग कृत्रिम बुद्धिमत्ता की एक शाखा है। नमस्ते दुनिया",
    "Emoji: 😀 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ — café naïve résumé façade",
    "Numbers 1,234,567 and 3.14159 and 2024-01-31 and 0x1F and 1e-9.",
    "def f(x):\n    return x * 2\n\n\tif (a) {\n\t\treturn b;\n\t}\r\n",
]

CASES = [
    "",
    "Hello, world! This is a test of the tokenizer.",
    "The model's output wasn't what we'd expected; THEY'LL fix it. I'M sure she'S right.",
    "def add(a, b):\n    \"\"\"Add two numbers.\"\"\"\n    return a + b\n\n\nclass Foo:\n    pass\n",
    "int main(void)\n{\n\tint x = 42;\t/* tab */\n\tif (x > 0)\n\t\treturn x;\n\treturn 0;\n}\n",
    "机器学习是人工智能的一个分支。分词器把文本切成词元。",
    "مرحبا بالعالم، هذا اختبار.",
    "नमस्ते दुनिया, यह एक परीक्षण है।",
    "Emoji 😀😃 thumbs 👍🏽👍🏿 family 👨‍👩‍👧‍👦 flag 🇯🇵 heart ❤️ rainbow 🏳️‍🌈",
    "1234567890123456789 3.14159 1,234,567 -0.5e10 v2.0.1 2024年1月31日",
    "     leading spaces and trailing spaces     ",
    "line one\r\nline two\r\n\r\n\n\n\nafter blank lines\n   \n\t\n",
    "tabs\t\tand\t \tmixed \t whitespace\u00a0nbsp\u3000ideographic",
    "odd spaces: a\u0085b\u000bc\u2028d\u200be\u001cf \u0085 \u2029",
    "NFC: e\u0301 vs \u00e9, A\u030a vs \u00c5, \u1100\u1161 vs \uac00",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>",
    "<|endoftext|><|endoftext|>text<|im_start|<|im_end|>>",
    "mixedCASE camelCase snake_case kebab-case SCREAMING_CASE",
    "URL: https://example.com/path?q=1&r=2#frag and e-mail a.b@c.de",
    "'s 'S 'll 'LL 're 'RE 'd ''' ' s",
    "\x00 nul \x01 control \x7f del",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    " " * 70 + "x" + "\n" * 30,
]
LLAMA3_EXTRA_CASES = [
    "<|begin_of_text|>system<|eot_id|> and a <tool> call <tool>",
    "digits 1 12 123 1234 12345 123456",
]


def training_text(root):
    out = list(TRAIN_EXTRA) * 20
    for pattern in ("docs/*.md", "core/*.c", "core/*.h"):
        for path in sorted(glob.glob(os.path.join(root, pattern))):
            with open(path, encoding="utf-8") as f:
                out.append(f.read())
    return out


def trainer(vocab_size, specials):
    return trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                               special_tokens=specials,
                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet())


def qwen2_style(text):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_RE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(text, trainer(2500, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]))
    config = {"bos_token": None, "eos_token": "<|im_end|>",
              "pad_token": {"content": "<|endoftext|>", "special": True},
              "chat_template": CHAT_TEMPLATE, "tokenizer_class": "PreTrainedTokenizerFast"}
    return tok, config


def llama3_style(text):
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_RE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(text, trainer(2000, []))
    tok.add_special_tokens(["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"])
    tok.add_tokens([AddedToken("<tool>", special=False, normalized=False)])
    config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "pad_token": None,
              "chat_template": [{"name": "default", "template": CHAT_TEMPLATE},
                                {"name": "tool_use", "template": "{{ tools }}"}]}
    return tok, config


def smollm2_from_gguf(path):
    import gguf
    r = gguf.GGUFReader(path)

    def strings(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    tokens = strings("tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in strings("tokenizer.ggml.merges")]
    f = r.fields["tokenizer.ggml.token_type"]
    types = [int(f.parts[i][0]) for i in f.data]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == 3])
    return tok


def cases_doc(tok, texts, nfc, name):
    cases = []
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False).ids
        decoded = normalizers.NFC().normalize_str(text) if nfc else text
        # the reference's own decode must agree, or the case is no reference at all
        assert tok.decode(ids, skip_special_tokens=False) == decoded, (name, text)
        cases.append({"text": text, "ids": ids, "decoded": decoded})
    return {"format": FORMAT, "version": VERSION, "tokenizer": name,
            "regenerate": "python3 tools/make-tok-fixtures.py (tokenizers %s)" %
            __import__("tokenizers").__version__, "cases": cases}


def write_json(path, obj, indent=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=indent)
        f.write("\n")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = os.path.join(root, "tests", "fixtures", "tok")
    text = training_text(root)
    for name, make, nfc, extra in (("qwen2", qwen2_style, True, []),
                                   ("llama3", llama3_style, False, LLAMA3_EXTRA_CASES)):
        tok, config = make(text)
        os.makedirs(os.path.join(out, name), exist_ok=True)
        tok.save(os.path.join(out, name, "tokenizer.json"))
        write_json(os.path.join(out, name, "tokenizer_config.json"), config, indent=2)
        write_json(os.path.join(out, name + "-cases.json"), cases_doc(tok, CASES + extra, nfc, name),
                   indent=1)
        print("%s: vocab %d, %d cases" % (name, tok.get_vocab_size(), len(CASES + extra)))
    cache = os.environ.get("R1_CACHE", os.path.expanduser("~/.cache/r1"))
    gguf_path = os.path.join(cache, "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    if os.path.exists(gguf_path):
        tok = smollm2_from_gguf(gguf_path)
        write_json(os.path.join(out, "smollm2-cases.json"),
                   cases_doc(tok, CASES + LLAMA3_EXTRA_CASES, False, "smollm2"), indent=1)
        print("smollm2: vocab %d" % tok.get_vocab_size())
    else:
        print("smollm2: %s missing, smollm2-cases.json not rewritten" % gguf_path, file=sys.stderr)


if __name__ == "__main__":
    main()
