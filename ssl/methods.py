"""The self-supervised methods of ``ssl.pretrain``, one registry: ``METHODS[name] -> SSLMethod``.

A method is

* a Lightning module, a subclass of :class:`ssl.base_module.SSLModule` built as
  ``module(backbone, section, optim, batch_size)``;
* the dataclass of its config section: ``ssl.pretrain`` has one section per registered method,
  named after it (``simclr.*``, ``dino.*``), whichever method a run uses;
* the builder of its views in the data-loader workers, ``(augment, section, image_size) ->``
  a callable mapping a PIL image to the V view tensors the module's ``ssl_step`` takes;
* optionally the builder of the same views on the device (``data.augment_on=device``),
  ``(augment, section, image_size) ->`` a :class:`dermkit.augment.MultiViewAugment`.

``ssl.pretrain`` reads everything about a method from here: the ``--method`` names, the config
schema's sections, the module and both view paths.

Adding a method: write ``ssl/<name>_module.py`` (config dataclass, module and, unless the method
reuses existing views, its view builders; :mod:`ssl.simclr_module` is the shortest example), add one
:func:`register_method` call at the end of this file, and add the name to
:data:`dermkit.ssl_methods.SSL_METHODS`, where the benchmark reads it (this module refuses to load
until the two agree).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dermkit.augment import MultiViewAugment
from dermkit.backbones import Backbone
from dermkit.registry import Registry
from dermkit.ssl_methods import SSL_METHODS
from ssl.base_module import PretrainOptimConfig, SSLModule
from ssl.byol_module import BYOLConfig, BYOLModule, byol_device_views, byol_views
from ssl.device_transforms import dino_device_views, simclr_device_views
from ssl.dino_module import DINOConfig, DINOModule, local_crop_side
from ssl.simclr_module import SimCLRConfig, SimCLRModule
from ssl.transforms import PretrainAugmentConfig, dino_transform, simclr_transform

# (backbone, the method's config section, optim section, per-device batch size) -> module.
ModuleFactory = Callable[[Backbone, Any, PretrainOptimConfig, int], SSLModule]
# (augment section, the method's config section, image side S) -> PIL image -> list of V view tensors.
ViewsBuilder = Callable[[PretrainAugmentConfig, Any, int], Callable[[Any], list[Any]]]
# (augment section, the method's config section, image side S) -> (B, 3, S, S) uint8 -> V view batches.
DeviceViewsBuilder = Callable[[PretrainAugmentConfig, Any, int], MultiViewAugment]


@dataclass(frozen=True)
class SSLMethod:
    """One self-supervised method: what ``ssl.pretrain`` builds for ``method=<name>``.

    Attributes:
        name: registry name: the value of ``method`` and the key of the method's config section.
        module: the Lightning module class (any :data:`ModuleFactory`).
        config: dataclass of the ``<name>.*`` config section (its defaults are the schema's).
        views: builder of the worker-path views.
        device_views: builder of the device-path views; None if the method only supports
            ``data.augment_on=workers``.
    """

    name: str
    module: ModuleFactory
    config: type
    views: ViewsBuilder
    device_views: DeviceViewsBuilder | None = None


# Messages and ``--method`` list the names sorted; iteration (the config sections) keeps registration order.
METHODS: Registry[SSLMethod] = Registry("method", sort_names=True)


def register_method(method: SSLMethod) -> SSLMethod:
    """Add ``method`` to :data:`METHODS`.

    Raises:
        ValueError: the name is registered twice, or is missing from
            :data:`dermkit.ssl_methods.SSL_METHODS` (where the benchmark reads the names).
    """
    if method.name not in SSL_METHODS:
        raise ValueError(f"SSL method {method.name!r} is not in dermkit.ssl_methods.SSL_METHODS; add it there too, "
                         "so that the benchmark knows it")
    return METHODS.add(method.name, method)


def method_names() -> str:
    """The registered names, sorted and comma-separated (for help texts and errors)."""
    return ", ".join(METHODS.names())


def get_method(name: str) -> SSLMethod:
    """The method registered as ``name``.

    Raises:
        DermkitError: unknown name; the message lists the registered names (and the closest ones).
    """
    return METHODS.lookup(name)


def _check_names_match() -> None:
    """Refuse a registry that differs from :data:`dermkit.ssl_methods.SSL_METHODS`."""
    missing = [name for name in SSL_METHODS if name not in METHODS]
    if missing:
        raise ValueError(f"dermkit.ssl_methods.SSL_METHODS lists {', '.join(missing)}, which ssl/methods.py does "
                         "not register; register it or remove it from the list")


# ---------------------------------------------------------------------------------------------
# SimCLR and DINO build their views with the functions of ssl.transforms / ssl.device_transforms;
# these adapters give them the registry's (augment, section, image_size) signature.
def _simclr_views(aug: PretrainAugmentConfig, simclr: SimCLRConfig, image_size: int) -> Any:
    return simclr_transform(aug, image_size)


def _simclr_device_views(aug: PretrainAugmentConfig, simclr: SimCLRConfig, image_size: int) -> MultiViewAugment:
    return simclr_device_views(aug, image_size)


def _dino_views(aug: PretrainAugmentConfig, dino: DINOConfig, image_size: int) -> Any:
    return dino_transform(aug, image_size, local_crop_side(dino, image_size), dino.n_local_views,
                          dino.global_crop_min_scale, dino.local_crop_min_scale, dino.local_crop_max_scale)


def _dino_device_views(aug: PretrainAugmentConfig, dino: DINOConfig, image_size: int) -> MultiViewAugment:
    return dino_device_views(aug, image_size, local_crop_side(dino, image_size), dino.n_local_views,
                             dino.global_crop_min_scale, dino.local_crop_min_scale, dino.local_crop_max_scale)


register_method(SSLMethod("simclr", SimCLRModule, SimCLRConfig, _simclr_views, _simclr_device_views))
register_method(SSLMethod("dino", DINOModule, DINOConfig, _dino_views, _dino_device_views))
register_method(SSLMethod("byol", BYOLModule, BYOLConfig, byol_views, byol_device_views))
_check_names_match()
