"""mmfd's configs for OpenMMLab's config tools: ``mmfd::`` paths and the model index.

``import mmfd`` calls :func:`setup_model_index`, which

* adds ``'mmfd'`` to mmengine's ``MODULE2PACKAGE``, so that a config of another
  project can inherit ``_base_ = ['mmfd::fd/<config>.py']``. mmengine resolves it
  under ``<installed mmfd>/.mim/configs`` (setup.py puts configs there: copies in a
  wheel, links in an editable install);
* makes mmfd's ``model-index.yml`` known to mmpretrain's ``ModelHub``, so that
  ``mmpretrain.list_models('*fd*')`` and ``mmpretrain.get_model(<name>)`` find
  mmfd's configs by their names.

The index is read lazily: parsing the metafiles is only worth doing when someone
asks the hub. mmpretrain reads its own index on the first ``list_models`` /
``ModelHub.get`` call, through ``ModelHub._register_mmpretrain_models``; mmfd
wraps that one entry point so that its models are registered at the same moment.
"""
from pathlib import Path
from typing import Optional, Tuple

PACKAGE_DIR = Path(__file__).resolve().parent

_registered = False


def find_model_index() -> Optional[Tuple[Path, Path]]:
    """``(model-index.yml, config prefix)`` of this mmfd, or None if it has none.

    An installed wheel carries ``mmfd/.mim/model-index.yml``; an editable install
    has it as a link there, or, before setup.py made the links, at the root of the
    checkout the package is imported from. Config paths in the metafiles
    (``configs/fd/...``) are relative to the folder that holds the index."""
    for root in (PACKAGE_DIR / '.mim', PACKAGE_DIR.parent):
        index = root / 'model-index.yml'
        if index.is_file() and (root / 'configs').is_dir():
            return index, root
    return None


def register_models(hub=None) -> bool:
    """Register mmfd's model index with mmpretrain's ``ModelHub`` (once).

    Returns False when this mmfd has no model index (a bare source copy)."""
    global _registered
    if _registered:
        return True
    found = find_model_index()
    if found is None:
        return False
    if hub is None:
        from mmpretrain.apis.model import ModelHub as hub
    index, prefix = found
    hub.register_model_index(str(index), config_prefix=str(prefix))
    _registered = True
    return True


def _hook_model_hub():
    """Register mmfd's models whenever mmpretrain registers its own."""
    from mmpretrain.apis.model import ModelHub

    original = ModelHub.__dict__['_register_mmpretrain_models'].__func__
    if getattr(original, '_mmfd_hook', False):
        return

    def register_mmpretrain_and_mmfd_models(cls):
        original(cls)
        register_models(cls)

    register_mmpretrain_and_mmfd_models._mmfd_hook = True
    ModelHub._register_mmpretrain_models = classmethod(register_mmpretrain_and_mmfd_models)


SCOPE_REGISTRIES = {}  # root registry name -> the ``mmfd``-scope registry under it


def _add_scope_registries():
    """An ``mmfd``-scope child registry in each of mmengine's registry trees."""
    import mmengine.registry as root_registries
    from mmengine.registry import Registry
    for root in vars(root_registries).values():
        if not isinstance(root, Registry) or root.parent is not None:
            continue
        if root.name in SCOPE_REGISTRIES or root._search_child('mmfd') is not None:
            continue
        parent = root.children.get('mmpretrain', root)
        SCOPE_REGISTRIES[root.name] = Registry(
            root.name, parent=parent, scope='mmfd', locations=list(parent._locations))


def setup_model_index():
    """What ``import mmfd`` does for ``mmfd::`` config paths and the ModelHub."""
    from mmengine.config.utils import MODULE2PACKAGE
    MODULE2PACKAGE.setdefault('mmfd', 'mmfd')
    _add_scope_registries()
    _hook_model_hub()
