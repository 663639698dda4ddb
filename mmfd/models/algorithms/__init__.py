from .fd import FeatureDistiller

__all__ = ['FeatureDistiller']
