"""Original model file -> our one-file snapshot (what `convert_snapshot.py` runs)."""
from vgrow_tf import interop
from vgrow_tf import snapshot
from vgrow_tf.errors import UserError


def convert_to_snapshot(source, out_path, source_format=None, **options):
    """Converts `source` (format detected unless `source_format` names it) and writes `out_path`.

    Returns the `Imported` (kind, config, networks, summary) that was written.
    """
    imported = interop.load(source, source_format, **options)
    snapshot.save(out_path, imported.kind, imported.config, imported.networks, imported.arrays)
    return imported


def copy_networks(source, target):
    """Assigns every weight of `source[name]` to `target[name]` (the same family and config), e.g. an
    imported model's networks into a freshly built Trainer's, to fine-tune from an original model."""
    for name, dst in target.items():
        if name not in source:
            raise UserError(f"the imported model has no network '{name}' (it has {', '.join(source)})")
        src_weights, dst_weights = source[name].weights, dst.weights
        shapes = [tuple(w.shape) for w in src_weights], [tuple(w.shape) for w in dst_weights]
        if shapes[0] != shapes[1]:
            raise UserError(f"network '{name}' of the imported model has another architecture than the one "
                            "being trained; use the imported model's settings (convert_snapshot.py prints them)")
        for s, d in zip(src_weights, dst_weights):
            d.assign(s)
