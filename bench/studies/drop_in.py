"""Claim 7: a drop-in head for CNNs and transformers, single-label and multi-label, at any resolution."""
from . import PROXY, SMALL, Study, register_study

STUDY = register_study(Study(
    name="drop-in",
    claim=7,
    statement="It is a drop-in head for CNNs and transformers, single-label and multi-label, at any resolution.",
    paper="COCO/VOC/NUS-WIDE/Open Images (multi-label, TResNet), ImageNet top-1 80.7 with a vanilla ResNet50 "
          "(single-label), 224 to 640 pixels.",
    base=dict(PROXY, seeds=[0, 1]),
    variations=[
        dict(backbones=["resnet10t", "vit_tiny_patch16_224"], img_size=64,
             heads=["gap", f"mldecoder({SMALL})"]),
        dict(backbones=["resnet10t"], img_size=96, heads=["gap", f"mldecoder({SMALL})"]),
        dict(dataset="fashion-mnist", backbones=["resnet10t"], img_size=56, epochs=2,
             heads=["gap", f"mldecoder({SMALL})"]),
    ],
    notes="A CNN (feature maps) and a ViT (tokens) on multi-label scenes at two resolutions, and single-label "
          "Fashion-MNIST; the claim holds here if the head runs unchanged everywhere and is not worse than GAP.",
))
