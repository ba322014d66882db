"""Original model file -> our one-file snapshot (what `convert_snapshot.py` runs)."""
from vgrow_tf import interop
from vgrow_tf import snapshot


def convert_to_snapshot(source, out_path, source_format=None, **options):
    """Converts `source` (format detected unless `source_format` names it) and writes `out_path`.

    Returns the `Imported` (kind, config, networks, summary) that was written.
    """
    imported = interop.load(source, source_format, **options)
    snapshot.save(out_path, imported.kind, imported.config, imported.networks, imported.arrays)
    return imported
