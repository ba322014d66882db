"""Model families. Each module provides KIND(S), OPTIONS, build_networks, generate, latent_dim, Trainer.

`get_family(kind)` maps a model kind (the `--model` flag, the `kind` stored in snapshots) to its module.
"""
import importlib
import importlib.util

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
