"""Record what a masked-diffusion sampler did, for ``collapse-probe import``.

``collapse-probe import FILE.jsonl`` turns a file of *collapse-probe trajectories, version 1*
into a decode folder that ``analyze``, ``report`` and ``check`` read like one written by
``collapse-probe decode``. This module writes such a file from the Python program that runs the
sampler. It needs the standard library only: ids may be lists, tuples, or anything with a
``.tolist()`` method (torch tensors, numpy arrays), so it never imports torch.

The format in brief (docs/trajectories.md has it in full): JSON Lines, one object per
generation, every line of a file in the same one of two forms.

- History form: ``prompt_ids`` (the prompt, no padding), ``history`` (the full sequence,
  prompt then generated part, after every step; not the all-mask start) and optionally
  ``mask_id``. The importer derives each position's commit step from the rows.
- Commit form: ``prompt_ids``, ``gen_ids``, ``commit_step`` (per generated position, the
  0-based step that committed it for the last time, ``-1`` if never), ``steps`` and
  optionally ``remask_count``.

Both forms may carry ``prompt_index``, ``prompt_id`` (a string), ``text`` and ``version``;
this writer writes ``version`` and ``prompt_index`` on every line. The importer refuses any
other field.

Example, for a LLaDA-style loop that appended ``x.clone()`` after every step::

    from collapse_probe_trajectories import TrajectoryWriter

    with TrajectoryWriter("llada.jsonl", mask_id=126336) as w:
        w.add_batch_history(prompt, history)

then ``collapse-probe import llada.jsonl --model path/to/model --out runs/mine/decode/llada``.

The writer checks what is cheap to check (shapes, lengths, integer ids, ranges, that every
row starts with the prompt) and raises ValueError naming the argument; the importer checks
the rest (vocabulary bounds, remasking, never-committed positions holding the mask id).
"""

import json
import operator
import os
import secrets

__all__ = ["TrajectoryWriter", "FORMAT_VERSION"]

#: The version of the interchange format this module writes.
FORMAT_VERSION = 1


class TrajectoryWriter:
    """Writes one trajectories file, atomically, inside a ``with`` block.

    Lines go to a temporary file in the destination's folder, which is renamed onto ``path``
    when the block ends normally. When the block raises, the temporary file is removed and
    ``path`` is left as it was, so a crashed run never leaves a truncated file that looks
    complete. A block that adds nothing writes an empty file.

    ``mask_id``, when given, is written on every history line; without it the importer takes
    ``--mask-id`` or the tokenizer's mask token.
    """

    def __init__(self, path, mask_id=None):
        self.path = os.fspath(path)
        self.mask_id = None if mask_id is None else _int(mask_id, "mask_id", minimum=0)
        self._file = None
        self._temp_path = None
        self._used = False
        # One file holds one form; the first line added fixes it.
        self._form = None
        self._next_prompt_index = 0

    def __enter__(self):
        if self._used:
            raise RuntimeError("a TrajectoryWriter writes its file once; make a new one")
        self._used = True
        folder = os.path.dirname(os.path.abspath(self.path))
        name = os.path.basename(self.path)
        while True:
            temp_path = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
            try:
                # 0o666 through the umask, as open() would create it; mkstemp's 0o600 would
                # survive the rename and surprise whoever reads the file next.
                fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                continue
            break
        self._temp_path = temp_path
        self._file = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        return self

    def __exit__(self, exc_type, exc, traceback):
        file, temp_path = self._file, self._temp_path
        self._file = self._temp_path = None
        if exc_type is not None:
            file.close()
            _remove_quietly(temp_path)
            return False
        try:
            file.flush()
            os.fsync(file.fileno())
            file.close()
            os.replace(temp_path, self.path)
        except BaseException:
            file.close()
            _remove_quietly(temp_path)
            raise
        return False

    def add_history(self, prompt_ids, history, *, input_length=None, prompt_id=None, text=None):
        """Adds one generation in the history form.

        ``history`` holds the whole sequence after every step: a list of rows (lists or 1-D
        tensors) or a 2-D tensor ``[steps, seq]``. The first ``input_length`` positions of
        each row are the sampler's input (default ``len(prompt_ids)``); when the input was
        left-padded they end with ``prompt_ids``, and the padding is dropped from the rows
        written, which become ``prompt_ids + row[input_length:]``.
        """
        line = self._history_line(prompt_ids, _matrix(history, "history"), input_length)
        self._write("history", line, prompt_id, text)

    def add_commits(
        self,
        prompt_ids,
        gen_ids,
        commit_step,
        steps,
        *,
        remask_count=None,
        prompt_id=None,
        text=None,
    ):
        """Adds one generation in the commit form.

        ``commit_step[i]`` is the 0-based step that committed ``gen_ids[i]`` for the last
        time, ``-1`` if it was never committed; ``remask_count[i]``, when given, how many
        times position ``i`` lost a committed token.
        """
        prompt = _ids(prompt_ids, "prompt_ids")
        gen = _ids(gen_ids, "gen_ids")
        commits = _ints(commit_step, "commit_step", minimum=-1)
        steps = _int(steps, "steps", minimum=1)
        if len(commits) != len(gen):
            raise ValueError(
                f"commit_step has {len(commits)} entries and gen_ids {len(gen)}: "
                "one commit step per generated position"
            )
        for position, step in enumerate(commits):
            if step >= steps:
                raise ValueError(
                    f"commit_step[{position}] is {step}, not below steps ({steps}): "
                    "steps are 0-based"
                )
        line = {"prompt_ids": prompt, "gen_ids": gen, "commit_step": commits, "steps": steps}
        if remask_count is not None:
            remasks = _ints(remask_count, "remask_count", minimum=0)
            if len(remasks) != len(gen):
                raise ValueError(
                    f"remask_count has {len(remasks)} entries and gen_ids {len(gen)}: "
                    "one count per generated position"
                )
            line["remask_count"] = remasks
        self._write("commit", line, prompt_id, text)

    def add_batch_history(
        self, input_ids, history, *, attention_mask=None, prompt_ids=None, prompt_id=None, text=None
    ):
        """Adds one generation per row of a batched sampler's run, in the history form.

        ``input_ids`` is the batch the sampler started from, ``[batch, input_len]``;
        ``history`` the whole batch after every step: a list over steps of ``[batch, seq]``
        (tensors or nested lists) or a 3-D tensor ``[steps, batch, seq]``. Every keyword is
        batched too, one entry per row:

        - ``attention_mask``: a row's prompt is its input ids where the mask is 1 (the
          input is left-padded: zeros, then ones);
        - ``prompt_ids``: the prompts themselves, for a padded batch without a mask;
        - ``prompt_id``, ``text``: as in :meth:`add_history`.

        With neither ``attention_mask`` nor ``prompt_ids`` a row's prompt is its whole input
        row. Every row is checked before any is written.
        """
        inputs = _matrix(input_ids, "input_ids")
        if not inputs:
            raise ValueError("input_ids has no rows")
        batch, input_length = len(inputs), len(inputs[0])
        for row, ids in enumerate(inputs):
            if len(ids) != input_length:
                raise ValueError(
                    f"input_ids row {row} has {len(ids)} ids and row 0 {input_length}"
                )
        if attention_mask is not None and prompt_ids is not None:
            raise ValueError("give attention_mask or prompt_ids, not both")
        if attention_mask is not None:
            prompts = _prompts_from_mask(inputs, _matrix(attention_mask, "attention_mask"))
        elif prompt_ids is not None:
            prompts = [
                _ids(prompt, f"prompt_ids[{row}]")
                for row, prompt in enumerate(_rows(prompt_ids, "prompt_ids"))
            ]
            _check_batch(prompts, batch, "prompt_ids")
        else:
            prompts = inputs
        prompt_id = _per_row(prompt_id, batch, "prompt_id")
        text = _per_row(text, batch, "text")
        for row in range(batch):
            _check_labels(prompt_id[row], text[row])

        steps = _rows(history, "history")
        if not steps:
            raise ValueError(
                "history is empty: it needs the batch after every step, one entry per step"
            )
        per_step = []
        for step, rows in enumerate(steps):
            matrix = _matrix(rows, f"history step {step}")
            if len(matrix) != batch:
                raise ValueError(
                    f"history step {step} has {len(matrix)} rows and input_ids {batch}"
                )
            per_step.append(matrix)

        lines = [
            self._history_line(
                prompts[row],
                [matrix[row] for matrix in per_step],
                input_length,
                where=f"batch row {row}: ",
            )
            for row in range(batch)
        ]
        for row, line in enumerate(lines):
            self._write("history", line, prompt_id[row], text[row])

    def _history_line(self, prompt_ids, rows, input_length, where=""):
        """Checks one generation's history and returns its line, padding dropped."""
        prompt = _ids(prompt_ids, "prompt_ids")
        if not rows:
            raise ValueError(
                f"{where}history is empty: it needs the sequence after every step, one row per step"
            )
        width = len(rows[0])
        for step, row in enumerate(rows):
            if len(row) != width:
                raise ValueError(
                    f"{where}history row {step} has {len(row)} ids and row 0 {width}: "
                    "every row is the whole sequence after one step"
                )
        if input_length is None:
            input_length = len(prompt)
        input_length = _int(input_length, "input_length", minimum=0)
        if input_length < len(prompt):
            raise ValueError(
                f"{where}input_length is {input_length}, "
                f"shorter than prompt_ids ({len(prompt)} ids)"
            )
        if input_length >= width:
            raise ValueError(
                f"{where}history rows have {width} ids and the input {input_length}: "
                "nothing after the input was generated"
            )
        padding = input_length - len(prompt)
        for step, row in enumerate(rows):
            if row[padding:input_length] != prompt:
                # The importer refuses such a row too; saying it here points at the sampler.
                raise ValueError(
                    f"{where}history row {step} does not hold prompt_ids at positions "
                    f"{padding}..{input_length} (prompt_ids has {len(prompt)} ids, input_length "
                    f"is {input_length}): record the sequence x itself, and give input_length "
                    "when the input is left-padded"
                )
        line = {"prompt_ids": prompt}
        if self.mask_id is not None:
            line["mask_id"] = self.mask_id
        line["history"] = [prompt + row[input_length:] for row in rows]
        return line

    def _write(self, form, line, prompt_id, text):
        if self._file is None:
            raise RuntimeError(
                "TrajectoryWriter writes inside a with block: "
                "with TrajectoryWriter(path) as w: w.add_history(...)"
            )
        if self._form is not None and self._form != form:
            raise ValueError(
                f"this file holds the {self._form} form and one file holds one form; "
                f"write the {form} form to another file"
            )
        _check_labels(prompt_id, text)
        self._form = form
        full = {"version": FORMAT_VERSION, "prompt_index": self._next_prompt_index}
        if prompt_id is not None:
            full["prompt_id"] = prompt_id
        full.update(line)
        if text is not None:
            full["text"] = text
        self._file.write(json.dumps(full, ensure_ascii=False, separators=(",", ":")))
        self._file.write("\n")
        self._next_prompt_index += 1


def _check_labels(prompt_id, text):
    if prompt_id is not None and not isinstance(prompt_id, str):
        raise ValueError(f"prompt_id must be a string, got {prompt_id!r}")
    if text is not None and not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")


def _remove_quietly(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _rows(value, what):
    """The outer list of ``value``: a tensor's ``.tolist()``, a list or tuple, or any iterable."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return value
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{what}: expected a list or a tensor, got {type(value).__name__}")
    return list(value)


def _ints(value, what, minimum):
    """A flat list of plain Python ints, each at least ``minimum``."""
    try:
        # operator.index takes ints, numpy and torch integer scalars and bools, and refuses
        # floats, so an id of 2.7 is an error instead of a silent 2.
        values = [operator.index(v) for v in _rows(value, what)]
    except TypeError:
        raise ValueError(f"{what}: expected a flat list of integers") from None
    if values and min(values) < minimum:
        position = min(range(len(values)), key=values.__getitem__)
        raise ValueError(f"{what}[{position}] is {values[position]}, below {minimum}")
    return values


def _ids(value, what):
    return _ints(value, what, minimum=0)


def _matrix(value, what):
    """A list of id rows from a 2-D tensor or a list of rows (lists or 1-D tensors)."""
    return [_ids(row, f"{what} row {i}") for i, row in enumerate(_rows(value, what))]


def _int(value, what, minimum):
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{what} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{what} is {number}, below {minimum}")
    return number


def _check_batch(values, batch, what):
    if len(values) != batch:
        raise ValueError(f"{what} has {len(values)} entries and input_ids {batch} rows")


def _per_row(value, batch, what):
    if value is None:
        return [None] * batch
    if isinstance(value, str):
        raise ValueError(f"{what} is batched: give a list with one entry per row")
    values = list(value)
    _check_batch(values, batch, what)
    return values


def _prompts_from_mask(inputs, mask):
    _check_batch(mask, len(inputs), "attention_mask")
    prompts = []
    for row, (ids, keep) in enumerate(zip(inputs, mask)):
        if len(keep) != len(ids):
            raise ValueError(
                f"attention_mask row {row} has {len(keep)} entries and input_ids {len(ids)}"
            )
        first = next((i for i, k in enumerate(keep) if k), len(keep))
        if any(k not in (0, 1) for k in keep) or not all(keep[first:]):
            # A right-padded or holed mask would put padding between the prompt and the
            # generated part, which the format cannot express.
            raise ValueError(
                f"attention_mask row {row} is not left padding (zeros, then ones): {keep}"
            )
        prompts.append(ids[first:])
    return prompts
