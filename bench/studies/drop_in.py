"""Claim 7: a drop-in head for CNNs and transformers, single-label and multi-label, at any resolution."""
from ._base import PROXY, SMALL, Study, register_study

STUDY = register_study(Study(
    name="drop-in",
    claim=7,
    statement="It is a drop-in head for CNNs and transformers, single-label and multi-label, at any resolution.",
    paper="COCO/VOC/NUS-WIDE/Open Images (multi-label, TResNet), ImageNet top-1 80.7 with a vanilla ResNet50 "
          "(single-label), 224 to 640 pixels.",
    base=dict(PROXY, seeds=[0, 1]),
    variations=[
        dict(backbones=["test_resnet", "test_vit"], img_size=64, heads=["gap", f"mldecoder({SMALL})"]),
        dict(backbones=["test_resnet"], img_size=128, heads=["gap", f"mldecoder({SMALL})"]),
        dict(dataset="fashion-mnist(train_size=10000)", backbones=["test_resnet"], img_size=32, epochs=3,
             heads=["gap", f"mldecoder({SMALL})"]),
    ],
    notes="A CNN (feature maps, timm's test_resnet) and a ViT (tokens, timm's test_vit) on multi-label scenes at "
          "64 and 128 px, and single-label Fashion-MNIST (10,000 training images, 32 px); the claim holds here if the head runs unchanged everywhere and is not worse than GAP.",
))
