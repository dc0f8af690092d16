"""A training step's gradients do not depend on how torch's idle OpenMP threads wait.

``eqsearch`` commands let idle threads sleep (``OMP_WAIT_POLICY=PASSIVE``) when the machine is
busy and spin when it is quiet; a kernel choice that followed the policy made a run's figures
depend on the machine's load.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

STEP = """
import hashlib
import torch
import torch.nn.functional as F
from supernet import build_supernet, init_quantizers
from eqsearch.space import LayerChoice, QuantForm, SubnetConfig

torch.set_num_threads(2)
torch.manual_seed(0)
supernet = build_supernet("resnet20", num_classes=10)
images = torch.randn(8, 3, 32, 32)
init_quantizers(supernet, images)
form = QuantForm("tensor", False, True)
supernet.set_subnet(SubnetConfig(tuple(
    LayerChoice(*(layer.pinned or (3, 3)), form) for layer in supernet.space.layers
)))
supernet.train()
F.cross_entropy(supernet(images), torch.arange(8) % 10).backward()
digest = hashlib.sha256()
for name, parameter in supernet.named_parameters():
    if parameter.grad is not None:
        digest.update(name.encode() + parameter.grad.numpy().tobytes())
print(digest.hexdigest())
"""


def _gradient_digest(policy: str) -> str:
    environment = {**os.environ, "OMP_WAIT_POLICY": policy, "OMP_NUM_THREADS": "2"}
    done = subprocess.run(
        [sys.executable, "-c", STEP],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return done.stdout.strip()


@pytest.mark.slow
def test_a_step_on_two_threads_has_the_same_gradients_whether_idle_threads_spin_or_sleep() -> None:
    spinning, sleeping = _gradient_digest("ACTIVE"), _gradient_digest("PASSIVE")
    assert len(spinning) == 64
    assert spinning == sleeping
