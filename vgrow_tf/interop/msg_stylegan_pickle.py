"""msg-stylegan-tf network pickles: the `(G, D, Gs)` tuple its training writes (`network-*.pkl`,
the published `best_model.pkl` files), read without TF1, dnnlib or the original sources.

Each network is a dnnlib tflib `Network` pickled as its state dict (`name`, `static_kwargs`,
`components`, `build_func_name`, `variables` = [(name, array)], `build_module_src`). The file is read
with a restricted unpickler (the Network class becomes a dict holder, arrays come from numpy's
reconstructors, nothing else is allowed); `build_module_src` is never looked at, let alone run.
The architecture comes from `static_kwargs` (over the original's defaults) and is checked against
every variable's shape.

Layout differences, original -> ours:
- NCHW const and noise inputs [1, C, H, W] -> NHWC [1, H, W, C]; conv kernels are HWIO in both.
- Stored weights are the un-scaled ones in both (equalized LR applies gain / sqrt(fan_in) * lrmul at
  run time); the mapping lr multiplier is `mapping_lrmul` in both.
- D's Dense0 reads an NCHW flatten (c, h, w) -> ours (h, w, c): its rows are permuted.
- D's combine concatenates [features, image] -> ours [image, features]: its rows are rotated.
- G's fused up-sampling conv (`fused_scale`, by default at outputs >= 128 px) is a stride-2
  transposed conv of the 3x3 kernel summed over four shifts; it equals nearest-upsample + 3x3 conv
  with that kernel rotated 180 degrees, which is how it is stored here. D's fused down-sampling conv
  is the same function as conv + 2x2 mean, so its kernel is taken as is.

`save_original_pickle` writes the reverse: one of our MSG-StyleGAN snapshots as a pickle that
msg-stylegan-tf's `misc.load_pkl` loads when run from a checkout of that code.
"""
import copyreg
import math
import os
import pickle

import numpy as np

from vgrow_tf.errors import UserError
from vgrow_tf.interop import Imported
from vgrow_tf.interop import restricted_pickle

FORMAT = "msg_stylegan_pkl"
DESCRIPTION = "msg-stylegan-tf network pickle (G, D, Gs), e.g. network-snapshot-*.pkl or best_model.pkl"
NETWORK_CLASS = ("dnnlib.tflib.network", "Network")

# The original's function defaults that decide the architecture (networks_stylegan.py signatures).
G_DEFAULTS = dict(latent_size=512, label_size=0, dlatent_size=512, mapping_layers=8, mapping_fmaps=512,
                  mapping_lrmul=0.01, mapping_nonlinearity="lrelu", use_wscale=True, normalize_latents=True,
                  dtype="float32", num_channels=3, resolution=1024, fmap_base=8192, fmap_decay=1.0,
                  fmap_max=512, use_styles=True, const_input_layer=True, use_noise=True,
                  nonlinearity="lrelu", use_pixel_norm=False, use_instance_norm=True, fused_scale="auto",
                  blur_filter=[1, 2, 1])
D_DEFAULTS = dict(num_channels=1, resolution=32, label_size=0, fmap_base=8192, fmap_decay=1.0, fmap_max=512,
                  nonlinearity="lrelu", use_wscale=True, mbstd_group_size=4, mbstd_num_features=1,
                  dtype="float32", fused_scale="auto", blur_filter=[1, 2, 1])
# Keyword -> our config key where the names differ (the rest keep the original's names; D's copies of
# G's settings are d_<name>). docs/original_models.md has the whole table.
G_KEYS = dict(latent_size="z_dim", use_wscale="use_eql")
G_SETTINGS = ("dlatent_size", "mapping_fmaps", "mapping_layers", "mapping_lrmul", "mapping_nonlinearity",
              "normalize_latents", "fmap_base", "fmap_max", "fmap_decay", "use_styles", "const_input_layer",
              "use_noise", "nonlinearity", "use_pixel_norm", "use_instance_norm", "use_wscale", "blur_filter",
              "fused_scale")
D_SETTINGS = ("fmap_base", "fmap_max", "fmap_decay", "nonlinearity", "use_wscale", "blur_filter", "fused_scale")
# G_style's call defaults, recorded when a pickle's static_kwargs set them (they are not architecture).
G_CALL = dict(truncation_psi=0.7, truncation_cutoff=8, dlatent_avg_beta=0.995)
CHOICES = dict(nonlinearity=("lrelu", "relu"), mapping_nonlinearity=("lrelu", "relu"),
               fused_scale=(True, False, "auto"), use_noise=(True, False, 0, 1), dtype=("float32", "float16"))


class NetworkState(restricted_pickle.StateHolder):
    """What a pickled dnnlib Network becomes here: its state dict, nothing executed."""


# --- reading ------------------------------------------------------------------------------------

def detect(path):
    """Any binary pickle: this is the only pickle-based original format (others get a clear refusal)."""
    return os.path.isfile(path) and restricted_pickle.looks_like_pickle(path)


def read_pickle(path):
    """{'G', 'D', 'Gs'} -> state dict, components' states nested as NetworkState objects."""
    allowed = {NETWORK_CLASS: NetworkState,
               ("dnnlib.util", "EasyDict"): dict, ("dnnlib", "EasyDict"): dict}
    obj = restricted_pickle.load(path, allowed, what=path)
    if not (isinstance(obj, tuple) and len(obj) == 3 and all(isinstance(n, NetworkState) for n in obj)):
        found = type(obj).__name__ if not isinstance(obj, tuple) else f"a tuple of {len(obj)}"
        raise UserError(f"{path} is a pickle but not an msg-stylegan-tf (G, D, Gs) network tuple (found "
                        f"{found}); use a network-snapshot-*.pkl / best_model.pkl written by its training")
    states = dict(zip(("G", "D", "Gs"), (n.state for n in obj)))
    for name, state in states.items():
        for key in ("name", "static_kwargs", "build_func_name", "variables"):
            if key not in state:
                raise UserError(f"{path}: network {name} lacks '{key}'; not an msg-stylegan-tf network pickle")
    return states


def _variables(state, path, prefix=""):
    """{full name: float32 array} of a network and its components (names as the original's Network.vars)."""
    out = {}
    for name, value in state["variables"]:
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            raise UserError(f"{path}: variable {prefix}{name} is not a float array")
        out[prefix + name] = value.astype(np.float32)
    for comp in (state.get("components") or {}).values():
        if not isinstance(comp, NetworkState):
            raise UserError(f"{path}: a component of {state['name']} is not a network")
        out.update(_variables(comp.state, path, prefix + comp.state["name"] + "/"))
    return out


def _kwargs(state, defaults, path, what):
    """The static kwargs over the function defaults, every value one we can build (else one line)."""
    kwargs = dict(defaults, **dict(state["static_kwargs"]))
    if kwargs["label_size"]:
        raise UserError(f"{path}: {what} was built with label_size={kwargs['label_size']!r}; only 0 can be "
                        "imported (a conditional model needs labelled data, which MSG training here does not use)")
    for key, allowed in CHOICES.items():
        if key in kwargs and kwargs[key] not in allowed:
            raise UserError(f"{path}: {what} was built with {key}={kwargs[key]!r}, which msg-stylegan-tf "
                            f"does not define (it takes {', '.join(map(repr, allowed))})")
    blur = kwargs["blur_filter"]
    if blur is not None and not (isinstance(blur, (list, tuple)) and all(isinstance(t, (int, float)) for t in blur)):
        raise UserError(f"{path}: {what} was built with blur_filter={blur!r}; only a list of taps (a separable "
                        "filter) or None can be imported")
    return kwargs


def architecture(states, path):
    """Our msg_stylegan config, from the static kwargs of G and D over the original's defaults."""
    from vgrow_tf.models import msg_gan

    for name, func in (("G", "G_style"), ("Gs", "G_style"), ("D", "D_basic")):
        if states[name]["build_func_name"] != func:
            raise UserError(f"{path}: {name} is built by {states[name]['build_func_name']}, not {func}; "
                            "only MSG-StyleGAN (G_style + D_basic) pickles can be imported")
    g = _kwargs(states["G"], G_DEFAULTS, path, "G")
    d = _kwargs(states["D"], D_DEFAULTS, path, "D")
    for key in ("resolution", "num_channels"):
        if g[key] != d[key]:
            raise UserError(f"{path}: G and D differ in {key} ({g[key]} vs {d[key]}); cannot be imported")
    style = {G_KEYS.get(k, k): g[k] for k in G_SETTINGS}
    style.update({f"d_{G_KEYS.get(k, k)}": d[k] for k in D_SETTINGS})
    style["use_noise"] = bool(style["use_noise"])
    style["mbstd_num_features"] = d["mbstd_num_features"]
    given = dict(states["G"]["static_kwargs"])
    for key in G_CALL:
        if key in given:
            style[key] = given[key] if given[key] is not None else (1.0 if key == "dlatent_avg_beta" else None)
    for key in ("blur_filter", "d_blur_filter"):
        style[key] = list(style[key] or [])
    mapping = dict(mapping_layers=int(style.pop("mapping_layers")), mapping_fmaps=int(style.pop("mapping_fmaps")),
                   mapping_lrmul=float(style.pop("mapping_lrmul")))
    config = msg_gan.make_config(
        "msg_stylegan", int(g["resolution"]), int(g["num_channels"]), int(g["latent_size"]),
        int(style.pop("fmap_base")), int(style.pop("fmap_max")), "cat_lin", mbstd_group_size=int(d["mbstd_group_size"]),
        use_eql=bool(style.pop("use_eql")), **mapping, **style)
    return config


# --- the correspondence of variables --------------------------------------------------------------

def _nchw_to_nhwc(a):
    return np.transpose(a, (0, 2, 3, 1))


def _nhwc_to_nchw(a):
    return np.transpose(a, (0, 3, 1, 2))


def _rot180(a):
    return np.ascontiguousarray(a[::-1, ::-1])


def _identity(a):
    return a


def _dense_rows_chw_to_hwc(channels):
    def to_ours(a):
        return a.reshape(channels, 4, 4, -1).transpose(1, 2, 0, 3).reshape(a.shape)

    def to_orig(a):
        return a.reshape(4, 4, channels, -1).transpose(2, 0, 1, 3).reshape(a.shape)
    return to_ours, to_orig


def _combine_rows(image_channels):
    def to_ours(a):  # [.., feats + img, out] -> [.., img + feats, out]
        return np.concatenate([a[:, :, -image_channels:], a[:, :, :-image_channels]], axis=2)

    def to_orig(a):
        return np.concatenate([a[:, :, image_channels:], a[:, :, :image_channels]], axis=2)
    return to_ours, to_orig


def _fused_up(res, fused_scale):
    return fused_scale is True or (fused_scale == "auto" and res >= 128)


def _dense_columns_chw_to_hwc(channels):
    """G_synthesis's 4x4/Dense output is reshaped NCHW (c, h, w); ours NHWC: its columns are permuted."""
    def to_ours(a):
        return a.reshape(a.shape[0], channels, 4, 4).transpose(0, 2, 3, 1).reshape(a.shape)

    def to_orig(a):
        return a.reshape(a.shape[0], 4, 4, channels).transpose(0, 3, 1, 2).reshape(a.shape)
    return to_ours, to_orig


def generator_variables(g):
    """[(original full name, our variable, to_ours, to_orig)] for one of our StyleGenerators, in the
    original's creation order (G_synthesis, G_mapping, then G's own dlatent_avg)."""
    same, nchw = (_identity, _identity), (_nchw_to_nhwc, _nhwc_to_nchw)
    syn = [(f"noise{i}", v) + nchw for i, v in enumerate(g.noise_consts)]
    top = int(math.log2(g.resolution))
    fused_scale = g.settings["fused_scale"]

    def layer(scope, i, weight=None, kernel_maps=same):
        e = g.epilogues[i]
        head = [(f"{scope}/weight", weight) + kernel_maps] if weight is not None else []
        noise = [(f"{scope}/Noise/weight", e.noise.weight) + same] if e.noise is not None else []
        style = [(f"{scope}/StyleMod/weight", e.style.affine.kernel) + same,
                 (f"{scope}/StyleMod/bias", e.style.affine.bias) + same] if e.style is not None else []
        return head + noise + [(f"{scope}/bias", e.bias) + same] + style

    for k, res in enumerate(g.resolutions):
        block = f"{res}x{res}"
        if res == 4:
            if g.const is not None:
                syn += [("4x4/Const/const", g.const) + nchw] + layer("4x4/Const", 0)
            else:
                syn += layer("4x4/Dense", 0, g.input_dense.kernel, _dense_columns_chw_to_hwc(g.width4))
            syn += layer("4x4/Conv", 1, g.convs[0][0].kernel)
        else:
            up = (_rot180, _rot180) if _fused_up(res, fused_scale) else same
            syn += layer(f"{block}/Conv0_up", 2 * k, g.convs[k][0].kernel, up)
            syn += layer(f"{block}/Conv1", 2 * k + 1, g.convs[k][1].kernel)
        lod = top - int(math.log2(res))
        rgb = g.to_rgb[k]
        syn += [(f"ToRGB_lod{lod}/weight", rgb.kernel) + same, (f"ToRGB_lod{lod}/bias", rgb.bias) + same]
    mapping = [(f"Dense{i}/{part}", getattr(dense, attr)) + same
               for i, dense in enumerate(g.mapping) for part, attr in (("weight", "kernel"), ("bias", "bias"))]
    return ([(f"G_synthesis/{e[0]}",) + e[1:] for e in syn] + [(f"G_mapping/{e[0]}",) + e[1:] for e in mapping]
            + [("dlatent_avg", g.dlatent_avg) + same])


def discriminator_variables(d, channels):
    """[(original name, our variable, to_ours, to_orig)] for our StyleDiscriminator, creation order."""
    top = int(math.log2(d.resolution))
    same = (_identity, _identity)
    out = [("FromRGB_lod0/weight", d.from_rgb.kernel) + same, ("FromRGB_lod0/bias", d.from_rgb.bias) + same]
    for k, res in enumerate(d.resolutions[::-1]):
        block = f"{res}x{res}"
        if k > 0:
            out.append((f"{block}/combine/weight", d.combines[k].conv.kernel) + _combine_rows(channels))
        if res > 4:
            conv0, conv1 = d.blocks[k]
            out += [(f"{block}/Conv0/weight", conv0.kernel) + same, (f"{block}/Conv0/bias", conv0.bias) + same,
                    (f"{block}/Conv1_down/weight", conv1.kernel) + same,
                    (f"{block}/Conv1_down/bias", conv1.bias) + same]
    assert top == k + 2
    out += [("4x4/Conv/weight", d.conv4.kernel) + same, ("4x4/Conv/bias", d.conv4.bias) + same,
            ("4x4/Dense0/weight", d.dense0.kernel) + _dense_rows_chw_to_hwc(d.conv4.kernel.shape[-1]),
            ("4x4/Dense0/bias", d.dense0.bias) + same,
            ("4x4/Dense1/weight", d.out.kernel) + same, ("4x4/Dense1/bias", d.out.bias) + same]
    return out


def _assign(table, stored, path, network):
    expected = {name for name, *_ in table}
    missing = [n for n in expected if n not in stored]
    extra = [n for n in stored if n not in expected]
    if missing or extra:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise UserError(f"{path}: network {network} does not have the variables its static_kwargs imply "
                        f"({detail}); not an msg-stylegan-tf MSG-StyleGAN pickle this version can import")
    for name, var, to_ours, _ in table:
        value = to_ours(stored[name])
        if tuple(value.shape) != tuple(var.shape):
            raise UserError(f"{path}: {network} variable {name} has shape {stored[name].shape}, the "
                            f"architecture from its static_kwargs needs another; the pickle is inconsistent")
        var.assign(value)


def convert(path, **unused_options):
    """The pickle at `path` as our msg_stylegan G, D and Gs (`Imported`)."""
    from vgrow_tf.models import msg_gan

    states = read_pickle(path)
    config = architecture(states, path)
    stored = {name: _variables(state, path) for name, state in states.items()}
    networks = msg_gan.build_networks(config)
    for name in ("G", "Gs"):
        _assign(generator_variables(networks[name]), stored[name], path, name)
    _assign(discriminator_variables(networks["D"], config["channels"]), stored["D"], path, "D")
    summary = (f"MSG-StyleGAN {config['resolution']} px, {config['channels']} channels, z {config['z_dim']}, "
               f"mapping {config['mapping_layers']} x {config['mapping_fmaps']}, w {config['dlatent_size']}, "
               f"fmaps G {config['fmap_base']}/{config['fmap_max']} D {config['d_fmap_base']}/{config['d_fmap_max']}, "
               f"mbstd group {config['mbstd_group_size']}{_changed_settings(config)} (G, D, Gs; no optimizer state)")
    return Imported(kind="msg_stylegan", config=config, networks=networks, arrays={}, summary=summary)


def _changed_settings(config):
    """', use_noise=False, ...' for the settings that differ from the original's defaults (for the summary)."""
    from vgrow_tf.models import msg_gan

    skip = {"dlatent_size", "d_fmap_base", "d_fmap_max"}
    changed = [f"{k}={config[k]!r}" for k in ("use_eql",) + msg_gan.STYLE_KEYWORDS
               if k not in skip and k in config and config[k] != msg_gan.style_settings({})[k]
               and not (k.startswith("d_") and config[k] == config.get(k[2:]))]
    return ", " + ", ".join(changed) if changed else ""


# --- writing (our snapshot -> an original pickle) ---------------------------------------------------

# What the original's Network.__setstate__ runs to find the build functions: the module of a
# checkout of msg-stylegan-tf (the loader has to run there anyway, for dnnlib).
BUILD_MODULE_SRC = "from training.networks_stylegan import *  # written by vgrow_tf\n"
# Globals as NumPy 1.x spells them, so that the original's environment can read the arrays
# (NumPy 2 reads these spellings too).
_WRITE_NAMES = {
    id(np._core.multiarray._reconstruct): ("numpy.core.multiarray", "_reconstruct"),
    id(np.ndarray): ("numpy", "ndarray"),
    id(np.dtype): ("numpy", "dtype"),
}


class _NetworkOut:
    """A Network to be pickled: its state dict under the original's class name."""

    def __init__(self, state):
        self.state = state

    def __reduce_ex__(self, protocol):
        return copyreg.__newobj__, (_NetworkOut,), self.state


class _OriginalPickler(pickle._Pickler):
    """Writes _NetworkOut as dnnlib.tflib.network.Network and numpy's globals in their 1.x names."""

    def save_global(self, obj, name=None):
        if obj is _NetworkOut:
            module, qualname = NETWORK_CLASS
        elif id(obj) in _WRITE_NAMES:
            module, qualname = _WRITE_NAMES[id(obj)]
        else:
            return super().save_global(obj, name)
        self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode("ascii"))
        self.memoize(obj)


def _network(name, func, num_inputs, kwargs, variables, components=None):
    return _NetworkOut(dict(num_inputs=num_inputs, version=3, name=name, static_kwargs=dict(kwargs),
                            components=dict(components or {}), build_module_src=BUILD_MODULE_SRC,
                            build_func_name=func, variables=variables))


def _original_arrays(table, prefix):
    return [(name[len(prefix):], np.ascontiguousarray(to_orig(var.numpy()), np.float32))
            for name, var, _, to_orig in table if name.startswith(prefix)]


def _generator_network(g, name, kwargs):
    table = generator_variables(g)
    syn = _network("G_synthesis", "G_synthesis", 1, kwargs, _original_arrays(table, "G_synthesis/"))
    mapping = _network("G_mapping", "G_mapping", 2, dict(kwargs, dlatent_broadcast=g.num_styles),
                       _original_arrays(table, "G_mapping/"))
    own = [(n, np.asarray(v.numpy(), np.float32)) for n, v, *_ in table if "/" not in n]
    return _network(name, "G_style", 2, kwargs, own, {"synthesis": syn, "mapping": mapping})


def original_kwargs(config):
    """(G_style kwargs, D_basic kwargs) that rebuild our msg_stylegan config in msg-stylegan-tf."""
    from vgrow_tf.models import msg_gan

    s = msg_gan.style_settings(config)
    common = dict(num_channels=config["channels"], resolution=config["resolution"], label_size=0)
    ours = dict(s, fmap_base=config["fmap_base"], fmap_max=config["fmap_max"], use_eql=config.get("use_eql", True),
                mapping_layers=config["mapping_layers"], mapping_lrmul=config["mapping_lrmul"], z_dim=config["z_dim"])
    g = dict(common, latent_size=ours["z_dim"], **{k: ours[G_KEYS.get(k, k)] for k in G_SETTINGS})
    g["blur_filter"] = list(g["blur_filter"]) or None
    for key in G_CALL:  # recorded call defaults, only when set (else the original's own apply)
        if config.get(key) is not None:
            g[key] = config[key]
    if g.get("dlatent_avg_beta") == 1.0:  # G_style's spelling of "no tracking" (it treats 1 alike)
        g["dlatent_avg_beta"] = None
    d = dict(common, mbstd_group_size=config["mbstd_group_size"], mbstd_num_features=s["mbstd_num_features"],
             **{k: s[f"d_{G_KEYS.get(k, k)}"] for k in D_SETTINGS})
    d["blur_filter"] = list(d["blur_filter"]) or None
    return g, d


def save_original_pickle(networks, config, path):
    """Writes our msg_stylegan networks {G, D, Gs} as msg-stylegan-tf's (G, D, Gs) pickle (protocol 3), every
    keyword of the architecture in each network's static_kwargs."""
    if config.get("model") != "msg_stylegan" or config.get("combine") != "cat_lin":
        raise UserError("only MSG-StyleGAN models with the cat_lin combine (the original's architecture) can be "
                        "written as an msg-stylegan-tf pickle")
    g_kwargs, d_kwargs = original_kwargs(config)
    d_table = discriminator_variables(networks["D"], config["channels"])
    d = _network("D", "D_basic", len(networks["D"].resolutions) + 1, d_kwargs, _original_arrays(d_table, ""))
    nets = (_generator_network(networks["G"], "G", g_kwargs), d, _generator_network(networks["Gs"], "Gs", g_kwargs))
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            _OriginalPickler(f, protocol=3).dump(nets)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
