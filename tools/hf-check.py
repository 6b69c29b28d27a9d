#!/usr/bin/env python3
"""Loads a Hugging Face model directory that r1 wrote (r1 convert, a checkpoint, r1 export)
with transformers, the way a user would, and prints its greedy chat answer and the token
ids of a text, to compare with `r1 sample --chat --temperature 0` and `r1 tokenize` on the
same directory.  Needs: pip install torch transformers (not part of tools/setup).
usage: hf-check.py DIR [PROMPT] [MAX_NEW_TOKENS]
"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    prompt = sys.argv[2] if len(sys.argv) > 2 else "What is the capital of France?"
    new = int(sys.argv[3]) if len(sys.argv) > 3 else 24
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    model.eval()
    print("architecture:", type(model).__name__, "parameters:",
          sum(p.numel() for p in model.parameters()))
    print("ids:", json.dumps(tok.encode(prompt, add_special_tokens=False)))
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                   add_generation_prompt=True)
    ids = tok(text, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=new, do_sample=False)
        logits = model(ids).logits[0, -1]
    print("last-position top-5:", json.dumps(torch.topk(logits, 5).indices.tolist()))
    print("answer:", repr(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=False)))


if __name__ == "__main__":
    main()
