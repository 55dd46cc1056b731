"""Tests of collapse_probe_trajectories: the writer, the snippets of docs/trajectories.md, and
`collapse-probe import` + `analyze` end to end on what a toy sampler recorded.

Run from the repository root: python -m unittest discover -s python/tests -t python

The end-to-end tests need the binary (`cargo build -p collapse-probe`, or COLLAPSE_PROBE=PATH)
and fail without it; the tests that need torch skip when it is not installed.
"""

import json
import os
import random
import re
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[2]
# Inserted here so that the tests also run under runners that do not put python/ on the path.
sys.path.insert(0, str(REPO / "python"))

from collapse_probe_trajectories import TrajectoryWriter  # noqa: E402

try:
    import torch
except ImportError:
    torch = None

needs_torch = unittest.skipIf(torch is None, "torch is not installed")

# Every field the format knows (docs/trajectories.md); the importer refuses any other.
FORMAT_FIELDS = {
    "prompt_ids", "gen_ids", "commit_step", "steps", "remask_count", "history", "mask_id",
    "prompt_index", "prompt_id", "text", "version",
}


def read_jsonl(path):
    with open(path, encoding="utf-8") as file:
        return [json.loads(line) for line in file]


def write_and_read(add, mask_id=None):
    """Runs ``add(writer)`` inside a writer's with block and returns the lines written."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "out.jsonl")
        with TrajectoryWriter(path, mask_id=mask_id) as writer:
            add(writer)
        return read_jsonl(path)


def commit_steps_from_history(rows, prompt_length, mask_id):
    """Per generated position, the first step after which it holds its final token and is
    never masked again (-1 if the last row masks it), as docs/trajectories.md defines it."""
    final = rows[-1]
    steps = []
    for position in range(prompt_length, len(final)):
        if final[position] == mask_id:
            steps.append(-1)
            continue
        step = len(rows) - 1
        while step > 0 and rows[step - 1][position] == final[position]:
            step -= 1
        steps.append(step)
    return steps


class IdLike:
    """An integer scalar that is not an int, as numpy and torch scalars are."""

    def __init__(self, value):
        self.value = value

    def __index__(self):
        return self.value


class ListLike:
    """A stand-in for a tensor or array: all the writer may rely on is ``.tolist()``."""

    def __init__(self, values):
        self.values = values

    def tolist(self):
        return self.values


class WriterTest(unittest.TestCase):
    def test_history_drops_left_padding(self):
        rows = [[0, 0, 5, 6, 9, 19], [0, 0, 5, 6, 9, 7]]
        lines = write_and_read(lambda w: w.add_history([5, 6], rows, input_length=4), mask_id=19)
        self.assertEqual(
            lines,
            [{"version": 1, "prompt_index": 0, "prompt_ids": [5, 6], "mask_id": 19,
              "history": [[5, 6, 9, 19], [5, 6, 9, 7]]}],
        )

    def test_history_without_padding_is_written_as_given(self):
        rows = [[5, 6, 19, 3], [5, 6, 4, 3]]
        lines = write_and_read(
            lambda w: w.add_history([5, 6], rows, prompt_id="first", text="a b")
        )
        self.assertEqual(
            lines,
            [{"version": 1, "prompt_index": 0, "prompt_id": "first", "prompt_ids": [5, 6],
              "history": rows, "text": "a b"}],
        )

    def test_batch_history_strips_padding_by_attention_mask(self):
        inputs = [[0, 0, 5, 6], [1, 2, 3, 4]]
        mask = [[0, 0, 1, 1], [1, 1, 1, 1]]
        history = [
            [[0, 0, 5, 6, 9, 19], [1, 2, 3, 4, 19, 8]],
            [[0, 0, 5, 6, 9, 7], [1, 2, 3, 4, 2, 8]],
        ]
        lines = write_and_read(
            lambda w: w.add_batch_history(
                inputs, history, attention_mask=mask, prompt_id=["a", "b"], text=None
            )
        )
        self.assertEqual([line["prompt_ids"] for line in lines], [[5, 6], [1, 2, 3, 4]])
        self.assertEqual(lines[0]["history"], [[5, 6, 9, 19], [5, 6, 9, 7]])
        self.assertEqual(lines[1]["history"], [[1, 2, 3, 4, 19, 8], [1, 2, 3, 4, 2, 8]])
        self.assertEqual([line["prompt_id"] for line in lines], ["a", "b"])

    def test_batch_history_takes_prompts_in_place_of_a_mask(self):
        history = [[[0, 5, 6, 9], [4, 4, 4, 3]]]
        lines = write_and_read(
            lambda w: w.add_batch_history([[0, 5, 6], [4, 4, 4]], history, prompt_ids=[[5, 6], [4]])
        )
        self.assertEqual([line["history"] for line in lines], [[[5, 6, 9]], [[4, 3]]])

    def test_batch_history_without_mask_takes_whole_input_rows(self):
        history = [[[1, 2, 9], [3, 4, 8]]]
        lines = write_and_read(lambda w: w.add_batch_history([[1, 2], [3, 4]], history))
        self.assertEqual([line["prompt_ids"] for line in lines], [[1, 2], [3, 4]])

    def test_commits_line(self):
        lines = write_and_read(
            lambda w: w.add_commits(
                [1, 2, 3], [9, 4, 7, 19], [0, 1, 1, -1], 3, remask_count=[0, 2, 0, 0]
            )
        )
        self.assertEqual(
            lines,
            [{"version": 1, "prompt_index": 0, "prompt_ids": [1, 2, 3], "gen_ids": [9, 4, 7, 19],
              "commit_step": [0, 1, 1, -1], "steps": 3, "remask_count": [0, 2, 0, 0]}],
        )

    def test_prompt_index_counts_generations_and_every_line_has_version(self):
        def add(w):
            w.add_history([1], [[1, 2]])
            w.add_batch_history([[1], [2]], [[[1, 3], [2, 3]]])
            w.add_history([4], [[4, 5]])

        lines = write_and_read(add)
        self.assertEqual([line["prompt_index"] for line in lines], [0, 1, 2, 3])
        self.assertTrue(all(line["version"] == 1 for line in lines))
        self.assertTrue(all(set(line) <= FORMAT_FIELDS for line in lines))
        self.assertTrue(all("mask_id" not in line for line in lines))

    def test_duck_typed_ids_become_plain_ints(self):
        history = ListLike([[1, 2, 19], [1, 2, 3]])
        lines = write_and_read(
            lambda w: w.add_history([IdLike(1), IdLike(2)], history), mask_id=IdLike(19)
        )
        self.assertEqual(lines[0]["history"], [[1, 2, 19], [1, 2, 3]])
        self.assertEqual(lines[0]["mask_id"], 19)

    @needs_torch
    def test_torch_tensors(self):
        prompt = torch.tensor([5, 6])
        padded_rows = torch.tensor([[0, 5, 6, 19, 19], [0, 5, 6, 8, 19], [0, 5, 6, 8, 9]])
        unpadded_rows = padded_rows.clone()
        unpadded_rows[:, 0] = 1

        def add(w):
            w.add_history(prompt, padded_rows, input_length=3)
            w.add_history(prompt, list(padded_rows[:, 1:]))
            w.add_batch_history(
                torch.tensor([[0, 5, 6], [1, 5, 6]]),
                torch.stack([padded_rows, unpadded_rows], dim=1),
                attention_mask=torch.tensor([[False, True, True], [True, True, True]]),
            )

        lines = write_and_read(add, mask_id=torch.tensor(19))
        expected = [[5, 6, 19, 19], [5, 6, 8, 19], [5, 6, 8, 9]]
        self.assertEqual(lines[0]["history"], expected)
        self.assertEqual(lines[1]["history"], expected)
        self.assertEqual(lines[2]["history"], expected)
        self.assertEqual(lines[3]["prompt_ids"], [1, 5, 6])
        self.assertEqual(lines[3]["history"], unpadded_rows.tolist())
        self.assertEqual(lines[0]["mask_id"], 19)

    def test_an_exception_in_the_block_leaves_no_file(self):
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "out.jsonl")
            with self.assertRaises(KeyError):
                with TrajectoryWriter(path) as w:
                    w.add_history([1], [[1, 2]])
                    raise KeyError("the sampler failed")
            self.assertEqual(os.listdir(folder), [])

    def test_an_exception_leaves_an_earlier_file_untouched(self):
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "out.jsonl")
            with TrajectoryWriter(path) as w:
                w.add_history([1], [[1, 2]])
            with self.assertRaises(ValueError):
                with TrajectoryWriter(path) as w:
                    w.add_history([3], [[3, 4]])
                    w.add_history([3], [])
            self.assertEqual(os.listdir(folder), ["out.jsonl"])
            self.assertEqual(read_jsonl(path)[0]["prompt_ids"], [1])

    def test_the_file_appears_only_when_the_block_ends(self):
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "out.jsonl")
            with TrajectoryWriter(path) as w:
                w.add_history([1], [[1, 2]])
                self.assertFalse(os.path.exists(path))
            self.assertEqual(os.listdir(folder), ["out.jsonl"])

    def test_bad_input_raises_value_error(self):
        cases = [
            (lambda w: w.add_history([1], []), "history is empty"),
            (lambda w: w.add_history([1], [[1, 2], [1, 2, 3]]), "row 1 has 3 ids"),
            (lambda w: w.add_history([1], [[2, 2]]), "does not hold prompt_ids"),
            (lambda w: w.add_history([1], [[1]]), "nothing after the input"),
            (lambda w: w.add_history([1, 2], [[0, 1, 2, 3]], input_length=1), "shorter than"),
            (lambda w: w.add_history([1], [[1, 2.5]]), "integers"),
            (lambda w: w.add_history([1], [[1, -2]]), "below 0"),
            (lambda w: w.add_history([1], "12"), "expected a list"),
            (lambda w: w.add_history([1], [[1, 2]], prompt_id=7), "prompt_id must be a string"),
            (lambda w: w.add_commits([1], [2, 3], [0], 1), "one commit step per"),
            (lambda w: w.add_commits([1], [2], [1], 1), "not below steps"),
            (lambda w: w.add_commits([1], [2], [-2], 1), "below -1"),
            (lambda w: w.add_commits([1], [2], [0], 0), "steps is 0"),
            (lambda w: w.add_commits([1], [2], [0], 1, remask_count=[0, 0]), "one count per"),
            (lambda w: w.add_batch_history([[1], [2]], [[[1, 2]]]), "has 1 rows"),
            (lambda w: w.add_batch_history([[1, 2], [3]], [[[1, 2, 3]]]), "input_ids row 1"),
            (
                lambda w: w.add_batch_history([[1, 0]], [[[1, 0, 2]]], attention_mask=[[1, 0]]),
                "not left padding",
            ),
            (lambda w: w.add_batch_history([[1]], [[[1, 2]]], text="a"), "batched"),
            (lambda w: w.add_batch_history([[1]], []), "history is empty"),
        ]
        for add, message in cases:
            with self.subTest(message=message):
                with tempfile.TemporaryDirectory() as folder:
                    with self.assertRaisesRegex(ValueError, message):
                        with TrajectoryWriter(os.path.join(folder, "out.jsonl")) as w:
                            add(w)

    def test_a_bad_batch_row_writes_no_row(self):
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "out.jsonl")
            with TrajectoryWriter(path) as w:
                with self.assertRaisesRegex(ValueError, "batch row 1"):
                    w.add_batch_history([[1], [2]], [[[1, 5], [9, 5]]])
            self.assertEqual(read_jsonl(path), [])

    def test_one_file_holds_one_form(self):
        def add(w):
            w.add_history([1], [[1, 2]])
            w.add_commits([1], [2], [0], 1)

        with self.assertRaisesRegex(ValueError, "one file holds one form"):
            write_and_read(add)

    def test_adding_outside_the_block_is_an_error(self):
        with self.assertRaisesRegex(RuntimeError, "with block"):
            TrajectoryWriter("never-written.jsonl").add_history([1], [[1, 2]])
        self.assertFalse(os.path.exists("never-written.jsonl"))


def docs_snippets():
    """The ```python blocks of docs/trajectories.md that open with ``# snippet: NAME``."""
    text = (REPO / "docs" / "trajectories.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(# snippet: ([\w-]+)\n.*?)^```$", text, re.M | re.S)
    return {name: code for code, name in blocks}


def run_snippet(name, namespace, folder):
    """Runs a docs snippet in ``namespace`` with ``folder`` as the working directory."""
    code = compile(docs_snippets()[name], f"docs/trajectories.md#{name}", "exec")
    previous = os.getcwd()
    os.chdir(folder)
    try:
        exec(code, namespace)
    finally:
        os.chdir(previous)


class ToyDenoiser:
    """Logits that favour one token per (row, position), more sharply at some positions than
    at others, so that committing by confidence follows a fixed order the test can log."""

    def __init__(self, vocab_size, mask_id):
        self.vocab_size, self.mask_id = vocab_size, mask_id

    def __call__(self, x):
        batch, length = x.shape
        rows = torch.arange(batch).unsqueeze(1)
        positions = torch.arange(length).unsqueeze(0)
        favourite = (3 * positions + 5 * rows) % self.mask_id
        sharpness = ((7 * positions + rows) % 11 + 1).float()
        logits = torch.zeros(batch, length, self.vocab_size)
        logits.scatter_(2, favourite.unsqueeze(-1), sharpness.unsqueeze(-1))
        return SimpleNamespace(logits=logits)


class ToyPositionChoice:
    """A LLaDA-style step's choice: x0 is the argmax, and the ``per_step`` masked positions of
    each row where it is most probable are committed. Logs the step of every commit."""

    def __init__(self, mask_id, per_step):
        self.mask_id, self.per_step = mask_id, per_step
        self.step = 0
        self.committed_at = {}

    def __call__(self, logits, x):
        confidence, x0 = logits.softmax(-1).max(-1)
        masked = x == self.mask_id
        confidence = torch.where(masked, confidence, torch.full_like(confidence, -1.0))
        transfer_index = torch.zeros_like(masked)
        for row, positions in enumerate(confidence.topk(self.per_step, dim=1).indices.tolist()):
            for position in positions:
                if masked[row, position]:
                    transfer_index[row, position] = True
                    self.committed_at[(row, position)] = self.step
        self.step += 1
        return x0, transfer_index


class ToyDream:
    """``diffusion_generate`` in miniature: commits ``max_new_tokens / steps`` positions of
    every row per step, from the last position leftwards, and returns the batch after every
    step as ``history`` when asked to."""

    def __init__(self, mask_id):
        self.mask_id = mask_id
        self.committed_at = {}

    def diffusion_generate(
        self,
        input_ids,
        attention_mask=None,
        max_new_tokens=None,
        steps=None,
        output_history=False,
        return_dict_in_generate=False,
    ):
        if not (output_history and return_dict_in_generate):
            raise AssertionError("the snippet must ask for the history in a returned object")
        self.attention_mask = attention_mask
        batch, input_length = input_ids.shape
        x = torch.cat([input_ids, torch.full((batch, max_new_tokens), self.mask_id)], dim=1)
        per_step = max_new_tokens // steps
        history = []
        for step in range(steps):
            for k in range(per_step):
                position = input_length + max_new_tokens - 1 - (step * per_step + k)
                for row in range(batch):
                    x[row, position] = (position + 2 * row) % self.mask_id
                    self.committed_at[(row, position)] = step
            history.append(x.clone())
        return SimpleNamespace(sequences=x, history=tuple(history))


def toy_histories(prompts, mask_id, gen_length=5):
    """A sampler returning one history per prompt: one position per step, in the order
    2, 4, 1, 3, 0 shifted by the prompt's index."""
    histories = []
    for index, prompt in enumerate(prompts):
        generated = [mask_id] * gen_length
        rows = []
        for step in range(gen_length):
            position = (2 * step + 2 + index) % gen_length
            generated[position] = (prompt[-1] + position + step) % mask_id
            rows.append(list(prompt) + generated)
        histories.append(rows)
    return histories


class SnippetTest(unittest.TestCase):
    def test_the_docs_hold_the_three_snippets(self):
        self.assertEqual(set(docs_snippets()), {"llada-loop", "dream", "histories"})

    @needs_torch
    def test_llada_loop(self):
        mask_id, steps, gen_length, per_step = 15, 4, 8, 2
        prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
        x = torch.full((2, 3 + gen_length), mask_id)
        x[:, :3] = prompt
        choice = ToyPositionChoice(mask_id, per_step)
        namespace = {
            "model": ToyDenoiser(vocab_size=16, mask_id=mask_id),
            "choose_positions": choice,
            "x": x,
            "prompt": prompt,
            "steps": steps,
            "mask_id": mask_id,
        }
        with tempfile.TemporaryDirectory() as folder:
            run_snippet("llada-loop", namespace, folder)
            lines = read_jsonl(os.path.join(folder, "llada.jsonl"))
        self.assertEqual(len(lines), 2)
        for row, line in enumerate(lines):
            self.assertEqual(line["prompt_index"], row)
            self.assertEqual(line["prompt_ids"], prompt[row].tolist())
            self.assertEqual(line["mask_id"], mask_id)
            self.assertEqual(len(line["history"]), steps)
            self.assertEqual(line["history"][-1], x[row].tolist())
            self.assertEqual(
                commit_steps_from_history(line["history"], 3, mask_id),
                [choice.committed_at[(row, 3 + i)] for i in range(gen_length)],
            )

    @needs_torch
    def test_dream(self):
        mask_id, pad_id = 20, 21
        model = ToyDream(mask_id)
        input_ids = torch.tensor([[pad_id, pad_id, 7, 8], [3, 4, 5, 6]])
        attention_mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
        namespace = {
            "model": model,
            "tokenizer": SimpleNamespace(mask_token_id=mask_id),
            "input_ids": input_ids,
            "attention_mask": attention_mask,
        }
        with tempfile.TemporaryDirectory() as folder:
            run_snippet("dream", namespace, folder)
            lines = read_jsonl(os.path.join(folder, "dream.jsonl"))
        out = namespace["out"]
        self.assertIs(model.attention_mask, attention_mask)
        self.assertEqual([line["prompt_ids"] for line in lines], [[7, 8], [3, 4, 5, 6]])
        for row, line in enumerate(lines):
            prompt = line["prompt_ids"]
            self.assertEqual(line["mask_id"], mask_id)
            self.assertEqual(len(line["history"]), len(out.history))
            self.assertEqual(line["history"][-1], prompt + out.sequences[row, 4:].tolist())
            gen_length = out.sequences.shape[1] - 4
            self.assertEqual(
                commit_steps_from_history(line["history"], len(prompt), mask_id),
                [model.committed_at[(row, 4 + i)] for i in range(gen_length)],
            )

    def test_histories(self):
        mask_id = 19
        prompts = [[1, 2, 3], [4], [5, 6]]
        namespace = {
            "sample": lambda prompts: toy_histories(prompts, mask_id),
            "prompts": prompts,
            "mask_id": mask_id,
        }
        with tempfile.TemporaryDirectory() as folder:
            run_snippet("histories", namespace, folder)
            lines = read_jsonl(os.path.join(folder, "samples.jsonl"))
        expected = toy_histories(prompts, mask_id)
        self.assertEqual([line["prompt_index"] for line in lines], [0, 1, 2])
        self.assertEqual([line["prompt_ids"] for line in lines], prompts)
        self.assertEqual([line["history"] for line in lines], expected)


# The end-to-end toys: a vocabulary of 20 ids, 19 the mask, no end ids.
VOCAB_SIZE, MASK_ID = 20, 19


class ToyGeneration:
    """One generation as a toy sampler ran it. What the sampler did to every position is
    counted as it happens, so the expected metrics never come from the written file."""

    def __init__(self, prompt, gen_length):
        self.prompt = list(prompt)
        self.gen_ids = [MASK_ID] * gen_length
        self.commit_step = [-1] * gen_length
        self.remask_count = [0] * gen_length
        self.history = []

    def set(self, step, position, token):
        """Writes ``token`` (or the mask) at a generated position during ``step``."""
        previous = self.gen_ids[position]
        if token == previous:
            return
        if previous != MASK_ID:
            # Masked again or replaced: the committed token is lost either way.
            self.remask_count[position] += 1
        self.gen_ids[position] = token
        self.commit_step[position] = -1 if token == MASK_ID else step

    def end_step(self):
        self.history.append(self.prompt + self.gen_ids)

    @property
    def steps(self):
        return len(self.history)


def llada_like_generation(seed, prompt_length, gen_length, steps, contiguous, never=()):
    """A LLaDA-style run: the positions (left to right, or shuffled) split over the steps as
    evenly as possible, earlier steps taking the remainder; each token copies its committed
    left neighbour half of the time, so adjacent duplicates occur. Positions in ``never`` are
    never committed."""
    rng = random.Random(seed)
    generation = ToyGeneration([rng.randrange(MASK_ID) for _ in range(prompt_length)], gen_length)
    order = [position for position in range(gen_length) if position not in never]
    if not contiguous:
        rng.shuffle(order)
    base, extra = divmod(len(order), steps)
    start = 0
    for step in range(steps):
        count = base + (step < extra)
        for position in order[start : start + count]:
            left = generation.gen_ids[position - 1] if position > 0 else MASK_ID
            copy = left != MASK_ID and rng.random() < 0.5
            generation.set(step, position, left if copy else rng.randrange(MASK_ID))
        start += count
        generation.end_step()
    return generation


def plain_toy():
    return [
        llada_like_generation(1, 4, 12, steps=4, contiguous=True),
        llada_like_generation(2, 3, 12, steps=6, contiguous=False),
        llada_like_generation(3, 5, 12, steps=12, contiguous=False),
        llada_like_generation(4, 2, 12, steps=5, contiguous=False, never={7}),
        llada_like_generation(5, 4, 12, steps=3, contiguous=True, never={11}),
    ]


def scripted_generation(prompt, gen_length, script):
    """A run given as, per step, the (position, token) pairs it writes; MASK_ID masks again."""
    generation = ToyGeneration(prompt, gen_length)
    for step, writes in enumerate(script):
        for position, token in writes:
            generation.set(step, position, token)
        generation.end_step()
    return generation


def remasking_toy():
    M = MASK_ID
    return [
        # Position 1 is masked again at step 2 and committed again; position 2 loses its token
        # twice, the first time getting the same token back.
        scripted_generation([1, 2, 3], 6, [
            [(0, 4), (1, 4)],
            [(2, 5), (3, 6)],
            [(1, M), (2, M)],
            [(1, 7), (2, 5), (4, 8)],
            [(2, M)],
            [(2, 10), (5, 9)],
        ]),
        # Position 2 is replaced by another token without a mask in between.
        scripted_generation([2, 2], 5, [
            [(0, 3), (1, 3), (2, 10)],
            [(2, 11)],
            [(3, 12), (4, 12)],
        ]),
        scripted_generation([7], 4, [[(0, 1), (1, 2)], [(2, 2), (3, 2)]]),
    ]


def expected_trap_metrics(generations):
    """The trap metrics of crates/analysis/METRICS.md over what the toys did. With no end ids
    a generation's analysed tokens run up to its first never-committed position."""
    pairs = same_step_pairs = duplicate_pairs = 0
    lengths, tokens_per_step = [], []
    remasked_positions = generated_positions = 0
    for g in generations:
        length = next((i for i, s in enumerate(g.commit_step) if s < 0), len(g.commit_step))
        lengths.append(length)
        for i in range(length - 1):
            pairs += 1
            same_step_pairs += g.commit_step[i] == g.commit_step[i + 1]
            duplicate_pairs += g.gen_ids[i] == g.gen_ids[i + 1]
        tokens_per_step.append(sum(s >= 0 for s in g.commit_step) / g.steps)
        remasked_positions += sum(count >= 1 for count in g.remask_count)
        generated_positions += len(g.gen_ids)
    return {
        "trap.tokens_per_step": sum(tokens_per_step) / len(generations),
        "trap.same_step_pair_fraction": same_step_pairs / pairs,
        "trap.adjacent_duplicate_rate": duplicate_pairs / pairs,
        "trap.gen_length": sum(lengths) / len(generations),
        "trap.generations": float(len(generations)),
        "trap.remask_rate": remasked_positions / generated_positions,
    }


class ToyTest(unittest.TestCase):
    """The toys exercise what the end-to-end tests check, so those can fail, and their
    histories agree with what they logged, so a failure there points at the importer."""

    def test_histories_agree_with_the_logged_commit_steps(self):
        for g in plain_toy() + remasking_toy():
            with self.subTest(prompt=g.prompt):
                self.assertEqual(
                    commit_steps_from_history(g.history, len(g.prompt), MASK_ID), g.commit_step
                )

    def test_plain_toy_is_not_degenerate(self):
        expected = expected_trap_metrics(plain_toy())
        self.assertTrue(0 < expected["trap.same_step_pair_fraction"] < 1)
        self.assertTrue(0 < expected["trap.adjacent_duplicate_rate"] < 1)
        # The never-committed positions shorten the analysed part but still leave committed
        # positions after it, which tokens_per_step counts.
        self.assertLess(expected["trap.gen_length"], 12)
        self.assertEqual(expected["trap.remask_rate"], 0)

    def test_remasking_toy_remasks_and_replaces(self):
        generations = remasking_toy()
        self.assertEqual(generations[0].remask_count, [0, 1, 2, 0, 0, 0])
        self.assertEqual(generations[0].commit_step, [0, 3, 5, 1, 3, 5])
        self.assertEqual(generations[1].remask_count, [0, 0, 1, 0, 0])
        self.assertEqual(generations[1].commit_step, [0, 0, 1, 2, 2])
        self.assertEqual(expected_trap_metrics(generations)["trap.remask_rate"], 3 / 15)


def collapse_probe_binary():
    if os.environ.get("COLLAPSE_PROBE"):
        return Path(os.environ["COLLAPSE_PROBE"])
    target = REPO / (os.environ.get("CARGO_TARGET_DIR") or "target")
    return target / "debug" / ("collapse-probe.exe" if os.name == "nt" else "collapse-probe")


class ImportAnalyzeTest(unittest.TestCase):
    """`collapse-probe import` then `analyze` on toy trajectories; the metrics must be what the
    toys did. Fails (does not skip) without the binary, so that CI cannot pass it silently."""

    def import_and_analyze(self, write, import_options=()):
        """Writes the trajectories with ``write(writer)``, imports and analyses them, and
        returns the metrics by name."""
        binary = collapse_probe_binary()
        if not binary.is_file():
            self.fail(
                f"{binary} does not exist: build it with `cargo build -p collapse-probe` "
                "(or `just build`), or point COLLAPSE_PROBE at it"
            )
        with tempfile.TemporaryDirectory() as folder:
            folder = Path(folder)
            trajectories = folder / "toy.jsonl"
            with TrajectoryWriter(trajectories, mask_id=MASK_ID) as writer:
                write(writer)
            decode = folder / "decode" / "toy"
            analysis = folder / "analysis"
            self.run_binary(
                binary, "import", trajectories, "--mask-id", str(MASK_ID),
                "--vocab-size", str(VOCAB_SIZE), "--name", "toy", "--out", decode,
                *import_options,
            )
            self.run_binary(binary, "analyze", "--records", decode, "--out", analysis, "--quiet")
            document = json.loads((analysis / "metrics.json").read_text(encoding="utf-8"))
        return {metric["name"]: metric for metric in document["metrics"]}

    def run_binary(self, *command):
        command = [str(part) for part in command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            self.fail(
                f"`{' '.join(command)}` exited with {done.returncode}:\n{done.stderr}{done.stdout}"
            )

    def assert_metrics(self, metrics, expected, names):
        for name in names:
            with self.subTest(metric=name):
                self.assertIn(name, metrics, f"metrics.json has {sorted(metrics)}")
                value = metrics[name]["value"]
                self.assertIsNotNone(value, f"{name} is null")
                self.assertLessEqual(
                    abs(value - expected[name]), 1e-12, f"{name}: {value} != {expected[name]}"
                )

    PLAIN_METRICS = [
        "trap.tokens_per_step",
        "trap.same_step_pair_fraction",
        "trap.adjacent_duplicate_rate",
        "trap.gen_length",
        "trap.generations",
    ]
    REMASK_METRICS = ["trap.remask_rate", "trap.tokens_per_step", "trap.generations"]

    def test_history_form(self):
        generations = plain_toy()

        def write(writer):
            for g in generations:
                writer.add_history(g.prompt, g.history)

        metrics = self.import_and_analyze(write)
        self.assert_metrics(metrics, expected_trap_metrics(generations), self.PLAIN_METRICS)
        # A sampler not declared to remask records no remask counts, so no remask rate.
        self.assertNotIn("trap.remask_rate", metrics)

    def test_commit_form(self):
        generations = plain_toy()

        def write(writer):
            for g in generations:
                writer.add_commits(g.prompt, g.gen_ids, g.commit_step, g.steps)

        metrics = self.import_and_analyze(write)
        self.assert_metrics(metrics, expected_trap_metrics(generations), self.PLAIN_METRICS)

    def test_remasking_history_form(self):
        generations = remasking_toy()

        def write(writer):
            for g in generations:
                writer.add_history(g.prompt, g.history)

        metrics = self.import_and_analyze(write, ["--allow-remasking"])
        self.assert_metrics(metrics, expected_trap_metrics(generations), self.REMASK_METRICS)

    def test_remasking_commit_form(self):
        generations = remasking_toy()

        def write(writer):
            for g in generations:
                writer.add_commits(
                    g.prompt, g.gen_ids, g.commit_step, g.steps, remask_count=g.remask_count
                )

        metrics = self.import_and_analyze(write, ["--allow-remasking"])
        self.assert_metrics(metrics, expected_trap_metrics(generations), self.REMASK_METRICS)


if __name__ == "__main__":
    unittest.main()
