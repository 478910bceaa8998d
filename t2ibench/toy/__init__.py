"""The toy world: a procedural 32 px image world with a pretrained tiny base model, tiny encoders
and a ground-truth probe, shipped with the package so the offline default measures something real.

Submodules: ``world`` (generator, concepts, captions), ``dataset`` (the toy dataset in the t2ibench
folder spec), ``base`` (the tiny SD-style parts), ``probe``, ``encoders``, ``plugin`` (registers the
toy profile, the named base and datasets and the validity sweep hook through entry points, as a
third party would: the core never imports this package). The scripts that rebuild every shipped
weight file live outside the package, in ``tools/toy/`` of the repository.
"""

import os

# On a shared CPU, OpenMP's default busy-waiting makes 2-thread torch runs up to 10x slower
# (measured: 45 s vs 1.4 s per base-model step); passive waiting avoids that. Only a default,
# and only effective when set before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
