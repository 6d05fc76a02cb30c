"""Object detection on the MobileNet backbone (paper Table 13): SSD300 and SSDLite as the TF Object
Detection API's ``ssd_mobilenet_v1``, Faster R-CNN as its ``faster_rcnn_mobilenet_v1``, COCO and
Pascal VOC data, a built-in stand-in dataset, COCO evaluation, training through the one loop,
ONNX export with NMS inside.

One module per concern: ``anchors`` (TF's SSD anchors), ``config`` (:class:`DetectorConfig`,
data only), ``build`` (:func:`build_detector`), ``ssd``, ``faster_rcnn``, ``data`` / ``voc`` / ``transforms`` (COCO and VOC
folders, checked; ``transforms.v2`` augmentation), ``standin`` (the built-in data), ``evaluate``
(COCO's 12 numbers), ``task`` (the :class:`~mobilenets.train.tasks.Task` and recipes), ``run``
(train / eval / load), ``predict``, ``export``; ``convert`` (TF OD API SSD-MobileNetV1 importer:
``tfjs`` reads TF.js weights, ``pipeline`` a pipeline.config, ``tf_od_api`` checkpoints and frozen
graphs, ``tf_layers`` places TF's layers), ``inputs`` (the input handling a detector records).
"""

from mobilenets.utils.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    ".anchors": ["SSDAnchorGenerator", "anchor_count", "anchors_table", "box_specs", "grid_anchors", "ssd_anchors",
                 "ssd_feature_map_sizes"],
    ".config": ["DetectorConfig", "DETECTORS", "make_config"],
    ".build": ["build_detector"],
    ".ssd": ["MobileNetSSD", "SSDBackbone", "build_ssd"],
    ".faster_rcnn": ["build_faster_rcnn"],
    ".data": ["DetectionDataset", "DetectionSplit", "load_splits"],
    ".standin": ["default_standin", "write_standin"],
    ".evaluate": ["STAT_NAMES", "coco_metrics", "evaluate_files"],
    ".task": ["DETECT_PRESETS", "DetectionTask", "detect_recipe"],
    ".run": ["eval_checkpoint", "load_detector", "train"],
    ".predict": ["predict"],
    ".export": ["export_detector"],
    ".convert": ["convert_detector"],
})
