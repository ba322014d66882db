"""Model families. Each module provides KIND(S), OPTIONS, build_networks, generate, latent_dim, Trainer.

A family whose prior is not N(0, I) also provides its latent sampler, either
`latent_sampler(config, arrays) -> draw(count, seed)` (a prior fitted to the snapshot's arrays, e.g.
GLO's Gaussian over its latent table) or `sample_latents(config, count, seed)` (a fixed prior, e.g.
CoGAN's uniform); `latent_sampler(family, ...)` below picks it, with N(0, I) as the one default.

`get_family(kind)` maps a model kind (the `--model` flag, the `kind` stored in snapshots) to its module.
"""
import importlib
import importlib.util

import numpy as np

from vgrow_tf.errors import UserError

# kind -> module (several kinds may share one module, e.g. MSG-StyleGAN and MSG-ProGAN).
FAMILY_MODULES = {
    "vgrow_pg": "vgrow_tf.models.vgrow_pg",
    "msg_stylegan": "vgrow_tf.models.msg_gan",
    "msg_progan": "vgrow_tf.models.msg_gan",
    "glo": "vgrow_tf.models.glo",
    "cogan": "vgrow_tf.models.coupled_gan",
    "scogan": "vgrow_tf.models.coupled_gan",
    "classifier": "vgrow_tf.models.classifier",
    "dgflow_corrector": "vgrow_tf.sampling.corrector",
}


def available(module_name):
    try:
        return importlib.util.find_spec(module_name) is not None
    except ModuleNotFoundError:
        return False


def get_family(kind):
    module_name = FAMILY_MODULES.get(kind)
    if module_name is None:
        raise UserError(f"unknown model kind '{kind}'; known: {', '.join(sorted(FAMILY_MODULES))}")
    if not available(module_name):
        raise UserError(f"model kind '{kind}' is not implemented in this version of vgrow_tf")
    return importlib.import_module(module_name)


def all_families():
    """Every family module that exists in this installation (each once)."""
    seen = []
    for module_name in dict.fromkeys(FAMILY_MODULES.values()):
        if available(module_name):
            module = importlib.import_module(module_name)
            if module not in seen:
                seen.append(module)
    return seen


def standard_normal(dim):
    """The default prior: draw(count, seed) = RandomState(seed).randn(count, dim)."""
    return lambda count, seed: np.random.RandomState(seed).randn(count, dim).astype(np.float32)


def latent_sampler(family, config, arrays):
    """(draw(count, seed) -> float32 [count, dim], is_standard_normal) for a family's snapshot."""
    if hasattr(family, "latent_sampler"):
        draw = family.latent_sampler(config, arrays)
        return (lambda count, seed: np.asarray(draw(count, seed), np.float32)), False
    if hasattr(family, "sample_latents"):
        return (lambda count, seed: np.asarray(family.sample_latents(config, count, seed), np.float32)), False
    return standard_normal(int(family.latent_dim(config))), True
