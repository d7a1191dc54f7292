"""Train the embedded tiny Qwen2-VL ('tiny') from scratch on CPU: visual arithmetic in QVQ's answer shape.

The model is the real `Qwen2VLForConditionalGeneration` (about 2.3M parameters: text hidden 192,
4 layers, 6 heads, 2 KV heads; vision embed 96, depth 2), with the project's tokenizer
(`qvq_ray.models.tiny.build_tokenizer(scaffold_merges=True)`: Qwen2-VL's special tokens and chat
template, every digit its own token, the prompt's words merged) and the real processor
(`qvq_ray.models.processor.load_processor`). Each training example is exactly what the engine
sends at solve time: the prompt `qvq_ray.prompt.build_messages` makes for a problem (QVQ's system
prompt, the image, the question and the boxed-answer instruction) through the chat template, then
the target `97-73=24\\n\\n**Final Answer**\\n\\n\\boxed{24}<|im_end|>`.
The loss is on the answer tokens only. Problems come from examples/make_visual_arithmetic.py's
train split (the test and dev problems never occur in training).

The budget is fixed in steps, not minutes, and everything is seeded (model init, data order;
torch runs with a fixed thread count and deterministic algorithms), so the same command on the
same software and CPU gives the same bytes (checked: two runs, one sha256). The shipped run took
352 s on this project's 2-core machine, about 0.55 s per step. The learning curve is sharp: dev
greedy accuracy 9% at step 300, 48% at 400, 73% at 500, 89% at 600; 600 steps stop while sampling
at T=1.0 is still clearly worse than greedy, which is what makes re-sampling worth showing.

    python pipelines/train_tiny.py --steps 600 --seed 0 --eval-every 100 --out qvq_ray/assets/tiny-qwen2-vl-arith

Prints step, loss and time as it goes, greedy and sampled accuracy on the dev split every
--eval-every steps, and saves the checkpoint (with its command, seed, loss and sha256 in
qvq_ray_tiny.json) at the end.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import random
import re
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOXED = re.compile(r"\\boxed\{(-?\d+)\}")


WORKED = re.compile(r"(\d+)([+-])(\d+)=(-?\d+)")


def _answer(text: str) -> int | None:
    m = BOXED.search(text)
    return int(m.group(1)) if m else None


def _correct(triple, text: str) -> bool:
    a, op, b = triple
    return _answer(text) == (a + b if op == "+" else a - b)


def _share(flags) -> float:
    flags = list(flags)
    return sum(map(bool, flags)) / max(1, len(flags))


def _majority(triple, texts: list[str]) -> bool:
    votes: dict[int, int] = {}
    for text in texts:
        if (answer := _answer(text)) is not None:
            votes[answer] = votes.get(answer, 0) + 1
    if not votes:
        return False
    a, op, b = triple
    return max(votes, key=lambda k: (votes[k], -list(votes).index(k))) == (a + b if op == "+" else a - b)


def _self_policy(triple, texts: list[str], quorum: int = 3) -> bool:
    """What the solver's `self` policy does with these samples in order (gold-free until scoring)."""
    healthy: list[str] = []
    for text in texts:
        line = WORKED.search(text)
        if _answer(text) is None or (line and int(line.group(4)) != (int(line.group(1)) + int(line.group(3)) if line.group(2) == "+" else int(line.group(1)) - int(line.group(3)))):
            continue  # no answer, or a false worked line: re-sample
        healthy.append(text)
        if sum(_answer(t) == _answer(text) for t in healthy) >= quorum:
            break
    return _majority(triple, healthy) if healthy else _correct(triple, texts[-1])


def load_generator():
    """examples/make_visual_arithmetic.py as a module (examples/ is not a package)."""
    path = ROOT / "examples" / "make_visual_arithmetic.py"
    spec = importlib.util.spec_from_file_location("make_visual_arithmetic", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def prompt_text(processor, gen) -> str:
    """The chat-templated prompt the engine builds for one of these problems (identical for all of them)."""
    from qvq_ray.config import ModelConfig
    from qvq_ray.problem import Problem
    from qvq_ray.prompt import build_messages

    model = ModelConfig()
    problem = Problem(id="x", question=gen.QUESTION)
    messages = build_messages(problem, [b"image"], system_prompt=model.system_prompt)
    # as HFEngine._prepare: image parts become {"type": "image"} for the template
    template = [
        {"role": m["role"], "content": [{"type": "image"} if p["type"] == "image" else p for p in m["content"]]}
        for m in messages
    ]
    return processor.apply_chat_template(template, tokenize=False, add_generation_prompt=True)


class Trainer:
    def __init__(self, args):
        import torch
        from transformers import Qwen2VLForConditionalGeneration

        from qvq_ray.models import tiny
        from qvq_ray.models.processor import load_processor

        self.args = args
        self.gen = load_generator()
        torch.set_num_threads(args.threads)
        if args.device == "cpu":
            torch.use_deterministic_algorithms(True)
        random.seed(args.seed)
        torch.manual_seed(args.seed)

        # tokenizer and image processor first, saved where the checkpoint goes, then loaded back
        # through the same loader the engine uses
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.tokenizer = tiny.build_tokenizer(scaffold_merges=True)
        config = tiny.build_config(self.tokenizer, tiny.TRAINED_TEXT, tiny.TRAINED_VISION, initializer_range=0.02)
        config.save_pretrained(self.out)  # a complete layout: AutoProcessor reads the model type from it
        self.tokenizer.save_pretrained(self.out)
        tiny.build_image_processor().save_pretrained(self.out)
        self.processor = load_processor(str(self.out))
        self.prompt = prompt_text(self.processor, self.gen)
        self.end = "<|im_end|>"

        self.device = args.device
        self.model = Qwen2VLForConditionalGeneration(config).to(torch.float32).to(self.device)
        self.params = sum(p.numel() for p in self.model.parameters())
        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2 and "embed" not in n]
        no_decay = [p for n, p in self.model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=args.lr,
            betas=(0.9, 0.98),
        )
        self.stream = self.gen.train_stream(args.seed)
        self.prompt_len = None

    def lr_at(self, step: int) -> float:
        """Linear warm-up, then cosine decay to min_lr_ratio of the peak at the last step."""
        a = self.args
        if step <= a.warmup:
            return a.lr * step / a.warmup
        progress = (step - a.warmup) / max(1, a.steps - a.warmup)
        return a.lr * (a.min_lr_ratio + (1 - a.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))

    def batch(self):
        """One training batch: real processor output, labels on the answer tokens only."""
        items = [next(self.stream) for _ in range(self.args.batch_size)]
        images = [self.gen.render(triple) for triple in items]
        texts = [self.prompt + self.gen.target_text(triple) + self.end for triple in items]
        self.processor.tokenizer.padding_side = "right"
        inputs = self.processor(text=texts, images=images, return_tensors="pt", padding=True)
        if self.prompt_len is None:
            ids = self.processor(text=[self.prompt], images=images[:1], return_tensors="pt")["input_ids"][0].tolist()
            self.prompt_len = len(ids)
            self.shared_len = ids.index(self.tokenizer.convert_tokens_to_ids("<|image_pad|>"))
        labels = inputs["input_ids"].clone()
        labels[:, : self.prompt_len] = -100
        labels[inputs["attention_mask"] == 0] = -100
        inputs["labels"] = labels
        return inputs.to(self.device)

    def loss(self, inputs):
        """The batch's loss; the prompt prefix every row shares is run once, not once per row.

        Every row starts with the same tokens up to the image (chat template, system prompt,
        `<|vision_start|>`): their keys and values are computed for one row and broadcast to the
        batch as a KV cache, then the rest of each row (image tokens, question, answer) attends to
        them. Same loss and gradients as the plain forward (tested to float tolerance), about a
        third less compute.
        """
        if not self.args.share_prefix:
            return self.model(**inputs).loss
        n = self.shared_len
        ids = inputs["input_ids"]
        base = self.model.model
        positions, _ = base.get_rope_index(
            ids,
            mm_token_type_ids=inputs["mm_token_type_ids"],
            image_grid_thw=inputs["image_grid_thw"],
            attention_mask=inputs["attention_mask"],
        )
        prefix = base.language_model(input_ids=ids[:1, :n], position_ids=positions[:, :1, :n], use_cache=True)
        cache = prefix.past_key_values
        for layer in cache.layers:
            layer.keys = layer.keys.expand(ids.shape[0], -1, -1, -1)
            layer.values = layer.values.expand(ids.shape[0], -1, -1, -1)
        out = self.model(
            input_ids=ids[:, n:],
            attention_mask=inputs["attention_mask"],
            position_ids=positions[:, :, n:],
            past_key_values=cache,
            use_cache=True,
            pixel_values=inputs["pixel_values"],
            image_grid_thw=inputs["image_grid_thw"],
            mm_token_type_ids=inputs["mm_token_type_ids"][:, n:],
            labels=inputs["labels"][:, n:],
        )
        return out.loss

    def train(self) -> dict:
        import torch

        a = self.args
        print(
            f"training tiny Qwen2-VL: {self.params / 1e6:.2f}M parameters, {a.steps} steps x batch {a.batch_size}, "
            f"lr {a.lr}, seed {a.seed}, {a.threads} threads",
            flush=True,
        )
        self.model.train()
        started = time.perf_counter()
        window: list[float] = []
        history = []
        loss_value = float("nan")
        for step in range(1, a.steps + 1):
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr_at(step)
            inputs = self.batch()
            loss = self.loss(inputs)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            loss_value = float(loss.detach())
            window.append(loss_value)
            if step % a.log_every == 0 or step == a.steps:
                elapsed = time.perf_counter() - started
                print(
                    f"step {step:5d}/{a.steps}  loss {sum(window) / len(window):.4f}  lr {self.lr_at(step):.2e}  "
                    f"{elapsed:7.1f} s  ({elapsed / step:.3f} s/step)",
                    flush=True,
                )
                history.append({"step": step, "loss": round(sum(window) / len(window), 5), "seconds": round(elapsed, 1)})
                window = []
            if a.eval_every and (step % a.eval_every == 0) and step != a.steps:
                self.report_eval(step)
        self.train_seconds = time.perf_counter() - started
        self.final_loss = history[-1]["loss"] if history else loss_value
        return {"history": history}

    def report_eval(self, step: int, full: bool = False) -> dict:
        """Dev-split accuracy: greedy and one sample at T=1; with `full`, also 8 samples per problem
        (maj@5, pass@8 and a simulation of the `self` policy: drop answers whose worked line is
        false, vote over up to 5, stop at 3 equal)."""
        triples = self.gen.splits()["dev"][: self.args.eval_size]
        greedy = self.generate(triples, 0.0, 1)
        sampled = self.generate(triples, 1.0, 8 if full else 1)
        result = {
            "dev_greedy": round(_share(_correct(t, g[0]) for t, g in zip(triples, greedy)), 4),
            "dev_sampled_t1": round(_share(_correct(t, s[0]) for t, s in zip(triples, sampled)), 4),
        }
        if full:
            result["dev_maj5_t1"] = round(_share(_majority(t, s[:5]) for t, s in zip(triples, sampled)), 4)
            result["dev_self_sim"] = round(_share(_self_policy(t, s[:5]) for t, s in zip(triples, sampled)), 4)
            result["dev_pass8_t1"] = round(_share(any(_correct(t, x) for x in s) for t, s in zip(triples, sampled)), 4)
        print(f"eval  step {step:5d}  " + "  ".join(f"{k} {v:.1%}" for k, v in result.items()), flush=True)
        return result

    def generate(self, triples, temperature: float, n: int) -> list[list[str]]:
        """`n` completions per dev problem (batched generate, left padding, the real processor).

        The global RNG is saved and restored so evaluating never changes the training run.
        """
        import torch

        rng_state = torch.get_rng_state()
        torch.manual_seed(12345)
        self.model.eval()
        self.processor.tokenizer.padding_side = "left"
        texts: list[list[str]] = []
        chunk_size = max(1, 256 // n)
        try:
            for i in range(0, len(triples), chunk_size):
                chunk = triples[i : i + chunk_size]
                images = [self.gen.render(t) for t in chunk]
                inputs = self.processor(text=[self.prompt] * len(chunk), images=images, return_tensors="pt", padding=True)
                inputs = inputs.to(self.device)
                with torch.inference_mode():
                    out = self.model.generate(
                        **inputs,
                        max_new_tokens=32,
                        do_sample=temperature > 0,
                        temperature=temperature if temperature > 0 else None,
                        top_p=None,
                        top_k=None,
                        num_return_sequences=n,
                        eos_token_id=self.tokenizer.convert_tokens_to_ids(self.end),
                        pad_token_id=self.tokenizer.pad_token_id,
                    )
                decoded = self.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
                texts.extend(decoded[k * n : (k + 1) * n] for k in range(len(chunk)))
        finally:
            self.model.train()
            torch.set_rng_state(rng_state)
        return texts

    def save(self, extra: dict) -> dict:
        from qvq_ray.models import tiny

        a = self.args
        command = "python pipelines/train_tiny.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])
        meta = {
            "builder": "pipelines/train_tiny.py",
            "command": command,
            "seed": a.seed,
            "steps": a.steps,
            "batch_size": a.batch_size,
            "lr": a.lr,
            "threads": a.threads,
            "parameters": self.params,
            "final_loss": self.final_loss,
            "train_seconds": round(self.train_seconds, 1),
            "task": "examples/make_visual_arithmetic.py (train split)",
            **extra,
        }
        import torch
        import transformers

        meta["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__}
        tiny.save_checkpoint(self.model, self.tokenizer, self.out, meta)
        meta["sha256"] = tiny.checkpoint_digest(self.out)  # over the weights, config and tokenizer, not this file
        (self.out / "qvq_ray_tiny.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="optimizer steps (the budget; fixed so results repeat)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "qvq_ray" / "assets" / "tiny-qwen2-vl-arith"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--min-lr-ratio", type=float, default=0.1, help="cosine decay ends at lr x this")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (part of what makes a run repeat)")
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument(
        "--no-share-prefix", dest="share_prefix", action="store_false", help="run the shared prompt prefix for every row"
    )
    parser.add_argument("--eval-every", type=int, default=0, help="dev-split accuracy every N steps (0: only at the end)")
    parser.add_argument("--eval-size", type=int, default=256)
    parser.add_argument(
        "--device", default="cpu", help="cpu (the shipped checkpoint; bit-for-bit repeatable) or cuda (quick experiments)"
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    trainer = Trainer(args)
    trainer.train()
    final = trainer.report_eval(args.steps, full=True)
    meta = trainer.save(final)
    size = sum(f.stat().st_size for f in Path(args.out).iterdir() if f.is_file())
    print(
        f"saved {args.out}: {size / 1e6:.1f} MB, sha256 {meta['sha256']}, final loss {meta['final_loss']}, "
        f"{meta['train_seconds']:.0f} s training"
    )
    print(json.dumps({k: meta[k] for k in ("steps", "seed", "lr", "final_loss", "train_seconds", *final, "sha256")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
