"""Type hints of the compiled module (python/src/lib.rs)."""

from typing import Any, Optional, Tuple

import numpy as np
import numpy.typing as npt

__version__: str

class Library:
    """A library of single-electron events (`emsim events`, or the shipped default)."""

    @staticmethod
    def load(path: Optional[str] = None) -> "Library": ...
    def save(self, path: str) -> None: ...
    @property
    def n_events(self) -> int: ...
    @property
    def pitch_um(self) -> float: ...
    @property
    def path(self) -> str: ...

class Model:
    """A trained network (`emsim train`; the shipped ones are in assets/models/)."""

    @staticmethod
    def load(path: Optional[str] = None) -> "Model": ...
    @property
    def name(self) -> str: ...
    @property
    def input_px(self) -> int: ...
    def infer(self, crops: npt.NDArray[np.float32]) -> np.ndarray: ...

class Generator:
    """Makes detector frames with ground truth, as `emsim frames` does (same seed, same frames)."""

    def __init__(
        self,
        library: Optional[Library] = None,
        *,
        size: Tuple[int, int] = (576, 576),
        electrons: float = 2927.294,
        electrons_sd: float = 70.531,
        dose: Optional[float] = None,
        noise_sigma_e: float = 20.0,
        gain_adu_per_e: float = 1.0,
        offset_adu: Optional[float] = None,
        dtype: str = "u16",
        seed: int = 0,
        device: str = "cpu",
    ) -> None: ...
    def generate(
        self, n: int, start: int = 0, out: Optional[np.ndarray] = None, truth: bool = True
    ) -> Tuple[np.ndarray, Optional[dict[str, np.ndarray]]]: ...
    def electron_count(self, k: int) -> int: ...
    @property
    def size(self) -> Tuple[int, int]: ...
    @property
    def offset_adu(self) -> float: ...
    @property
    def device(self) -> str: ...

def count(
    frames: npt.NDArray[Any],
    *,
    method: str = "c3x3t",
    finder: str = "pixel",
    sigma_e: Optional[float] = None,
    gain_adu_per_e: float = 1.0,
    offset_adu: float = 0.0,
    background_threshold_n_sigma: float = 4.0,
    centroid_threshold_e: float = 40.0,
    model: Optional[Model] = None,
    device: str = "cpu",
) -> dict[str, np.ndarray]: ...
def evaluate(
    found: dict[str, np.ndarray],
    truth: dict[str, np.ndarray],
    *,
    radius_px: float = 1.5,
    pixel_size_um: float = 5.0,
) -> dict[str, Any]: ...
def events(
    *,
    preset: str = "seed",
    count: int = 10000,
    seed: int = 0,
    energy_kev: Optional[float] = None,
    tilt_deg: Optional[float] = None,
    pitch_um: Optional[float] = None,
    stack: Optional[str] = None,
    depletion_um: Optional[float] = None,
    device: str = "cpu",
) -> Library: ...
def default_library_path() -> str: ...
def default_model_path() -> str: ...
