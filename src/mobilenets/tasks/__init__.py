"""The paper's downstream systems (Section 4), each in its own sub-package, built on the backbone's
feature taps (:mod:`mobilenets.models.features`) and the one training loop (:mod:`mobilenets.train.loop`):

- :mod:`mobilenets.tasks.geo`: geolocation over adaptive S2 cells (PlaNet, Table 11);
- :mod:`mobilenets.tasks.detect`: SSD, SSDLite and Faster R-CNN detectors (Table 13);
- :mod:`mobilenets.tasks.distill`: distillation into a MobileNet, face attributes and embeddings (Tables 12, 14).
"""
