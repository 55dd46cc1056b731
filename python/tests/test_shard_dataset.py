"""A sharded run's Parquet outputs form one Hive-style dataset: polars scans the shard folders of
`collapse-probe probe --shard i/n` (and of `decode`) as one table with a `shard` column, whose
rows are the unsharded run's.

Needs the binary (COLLAPSE_PROBE=PATH, as `just test` sets it) and polars (`just test` installs
it into the test venv); fails without either, so that CI cannot pass it silently.
"""

import os
import subprocess
import tempfile
import unittest
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def binary():
    if os.environ.get("COLLAPSE_PROBE"):
        return Path(os.environ["COLLAPSE_PROBE"])
    target = REPO / (os.environ.get("CARGO_TARGET_DIR") or "target")
    return target / "debug" / "collapse-probe"


class ShardDatasetTest(unittest.TestCase):
    def run_stage(self, stage, out, *extra):
        args = [
            str(binary()), stage,
            "--model", str(REPO / "fixtures/text-llada"),
            "--prompts", str(REPO / "probes/prompts/kjv.txt"),
            "--chat-template", "none", "--batch-size", "3", "--threads", "1", "--quiet",
            "--out", str(out), *extra,
        ]
        if stage == "probe":
            args += ["--masks", "16"]
        else:
            args += ["--schedule", "fixed:gen_length=8,k=2,order=random", "--seed", "5"]
        subprocess.run(args, check=True, capture_output=True)

    def test_polars_scans_the_shards_as_the_whole_run(self):
        try:
            import polars as pl
        except ImportError:
            self.fail("polars is not installed (`just test` installs it: pip install polars)")
        if not binary().is_file():
            self.fail(f"{binary()} does not exist: build it with `just build`")
        with tempfile.TemporaryDirectory() as folder:
            folder = Path(folder)
            for stage, table in [("probe", "records"), ("decode", "generations")]:
                self.run_stage(stage, folder / f"{stage}-whole")
                for i in range(3):
                    self.run_stage(stage, folder / stage, "--shard", f"{i}/3")
                scanned = pl.scan_parquet(
                    str(folder / stage / "*" / f"{table}.parquet"), hive_partitioning=True
                ).collect()
                whole = pl.read_parquet(folder / f"{stage}-whole" / f"{table}.parquet")
                self.assertEqual(sorted(scanned["shard"].unique().to_list()), [0, 1, 2])
                merged = scanned.sort("shard", maintain_order=True).drop("shard")
                self.assertTrue(merged.equals(whole), f"{stage}: the shards' rows differ")


if __name__ == "__main__":
    unittest.main()
