#!/usr/bin/env python3
"""transformers' own generate() across a change of RoPE frequencies, against goldens/hf/kv-cache.json.

Run where transformers 5.17 + torch are installed (the accelerator machine lent by the `device`
tool), from the repository root:

  python3 tools/reference/check_kv_switch_transformers.py [OUT_JSON]

For each case of test/fixtures/goldens/hf/kv-cache.json (numpy_ref's greedy_kv: Phi-3 LongRoPE
crossing its original context — where Phi3ForCausalLM.prepare_inputs_for_generation drops and
recomputes the cache —, dynamic NTK growing its base, Gemma 3 sliding windows), runs
model.generate() (greedy, float64, eager attention, no EOS stop) on the fixture checkpoint and
compares the generated ids and the logits of every step with the golden. Prints the largest
difference per case and exits non-zero above 1e-4 or on a different id. With OUT_JSON, writes
transformers' ids and step logits there (float32-rounded), in the golden's format.
"""
import json
import os
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GOLDEN = os.path.join(REPO, "test", "fixtures", "goldens", "hf", "kv-cache.json")
FIXTURES = os.path.join(REPO, "test", "fixtures", "hf-transformers")


def load64(d):
    return AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager", dtype=torch.float64).double().eval()


def main() -> int:
    cases = json.load(open(GOLDEN))["cases"]
    out, worst, failed = [], 0.0, []
    for c in cases:
        m = load64(os.path.join(FIXTURES, c["model"]))
        steps = len(c["gen_ids"])
        with torch.no_grad():
            g = m.generate(
                torch.tensor([c["prompt"]]),
                max_new_tokens=steps,
                min_new_tokens=steps,
                do_sample=False,
                num_beams=1,
                eos_token_id=None,
                pad_token_id=0,
                output_logits=True,
                return_dict_in_generate=True,
            )
        ids = g.sequences[0, len(c["prompt"]) :].tolist()
        logits = torch.stack([x[0] for x in g.logits]).float()
        diff = float((logits - torch.tensor(c["gen_logits"])).abs().max())
        same = ids == c["gen_ids"]
        worst = max(worst, diff)
        if diff > 1e-4 or not same:
            failed.append(c["model"])
        print(f"{c['model']:22s} ids {'equal' if same else 'DIFFER ' + str(ids)}  step logits max abs diff {diff:.2e}  ({c['what']})", flush=True)
        out.append({"model": c["model"], "prompt": c["prompt"], "gen_ids": ids, "gen_logits": logits.tolist()})
    print(f"transformers {transformers.__version__}, torch {torch.__version__}: worst {worst:.2e}")
    if len(sys.argv) > 1:
        json.dump({"transformers": transformers.__version__, "cases": out}, open(sys.argv[1], "w"))
    if failed:
        print("DIFFER:", ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
