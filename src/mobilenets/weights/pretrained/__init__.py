"""Official pretrained MobileNetV1 weights in one line: the registry of publishers' files
(:mod:`.registry`, torch-free), fetching into a cache (:mod:`.download`, :mod:`.hub`) and
conversion into cached model folders (:mod:`.fetch`). See ``docs/weights.md``."""

from mobilenets.utils.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    ".registry": ["ENTRIES", "Entry", "SOURCES", "choose", "entry_cost", "get_entry", "list_entries"],
    ".download": ["cache_root", "offline", "mirrored"],  # not `download`: the submodule has that name
    ".fetch": ["load_pretrained", "pretrained_path", "resolve_spec", "download_entry", "is_cached", "converted_path"],
    ".detectors": ["detector_path"],
    ".catalog": ["entry_rows", "download_entries"],
})
