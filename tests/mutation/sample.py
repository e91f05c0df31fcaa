"""Keeps a random sample of a cosmic-ray session's pending mutants and marks the rest
skipped, where a toml asks for one ([cosmic-ray.filters.sample] count = N): for a
module whose every mutant would take more hours than a pass has. The sample's share
of survivors estimates the module's; the same count and seed pick the same mutants.

  python tests/mutation/sample.py SESSION.sqlite CONFIG.toml
"""

import random
import sys
import tomllib

from cosmic_ray.work_db import use_db
from cosmic_ray.work_item import WorkerOutcome, WorkResult


def main(session: str, config: str) -> None:
  with open(config, 'rb') as f:
    sample = tomllib.load(f)['cosmic-ray']['filters']['sample']
  with use_db(session) as db:
    # Ordered by where each mutant is and what it does (job ids are random).
    pending = sorted(db.pending_work_items, key=lambda item: [
        (m.module_path.as_posix(), m.start_pos, m.operator_name, m.occurrence)
        for m in item.mutations])
    count = min(sample['count'], len(pending))
    kept = set(random.Random(sample.get('seed', 0)).sample(range(len(pending)), count))
    db.set_multiple_results([item.job_id for i, item in enumerate(pending) if i not in kept],
                            WorkResult(output='Not in the sample',
                                       worker_outcome=WorkerOutcome.SKIPPED))
  print(f'{count} of {len(pending)} pending mutants kept (seed {sample.get("seed", 0)}).')


if __name__ == '__main__':
  main(*sys.argv[1:])
