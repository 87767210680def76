"""All parameters of a run, nested by stage (the shape of a parameter file).

Stage sections use the seed's names (see each stage's params module). A flat
Rhapso-style file is accepted too: :mod:`rhapso_core.param_files` routes each key
to the stages that have it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from rhapso_core.detection import DetectionParams
from rhapso_core.fusion import FusionParams
from rhapso_core.intensity.params import IntensityParams
from rhapso_core.matching import MatchingParams
from rhapso_core.model_registry import model_name_type
from rhapso_core.params import StageParams
from rhapso_core.pipeline.view_selection import ViewSelection
from rhapso_core.qc import QCParams
from rhapso_core.solver import SolverParams
from rhapso_core.split import SplitParams
from rhapso_core.stitching.params import StitchingParams
from rhapso_core.synthetic.params import SyntheticParams
from rhapso_core.pipeline.retry_params import RetryParams
from rhapso_core.verify.params import VerifyParams

RoundKind = model_name_type("phase")
# Rounds that can carry their own matching parameters: the point-matching rounds and the split-affine solve.
MatchingRound = model_name_type("split_affine")


class AlignmentParams(StageParams):
    """How the alignment flow chains its rounds."""

    rounds: list[RoundKind] = Field(
        default_factory=lambda: ["rigid", "affine"],
        min_length=1,
        description="Rounds in order. translation / rigid / affine: match interest points + solve with that model "
        "(affine rounds regularise toward rigid with matching/solver lambda_value); phase: image-based "
        "translation by phase correlation of the overlaps + translation solve (parameters in `stitching`), e.g. "
        "[phase, rigid, affine] when stage errors exceed what matching bridges. Default rigid then affine.",
    )
    prealign: Literal["auto", "on", "off"] = Field(
        "auto",
        description="A phase-correlation round before the point rounds (when rounds has none): auto (default) "
        "runs it where the resolver finds the stage error beyond what matching bridges (matching.stage_uncertainty, "
        "or the shift measured by phase correlation of a few sampled overlaps) or overlaps too poor in interest "
        "points to match; on: always; off: never. The choice and its reason are in resolved_params.json / --explain.",
    )
    flatfield: Literal["off", "estimate"] = Field(
        "off",
        description="off (default): read the tiles as the XML's loader gives them (with the flat fields it "
        "records, if any). estimate: before anything else, estimate each channel's flat field (the objective's "
        "fall-off) from the tiles above the camera offset `intensity.dark_level` (required: the camera's "
        "documented value; one 20 counts too high was worse than none), write it as BigStitcher bright and "
        "dark images in `<solved XML stem>.flatfield/` beside the solved XML and align through them; the "
        "solved XML keeps them, so fusion reads the same corrected pixels. An XML with recorded flat fields "
        "uses its own. The fall-off biases alignment toward tile centres (docs/accuracy.md, 'Vignetting').",
    )
    pair_mode: Literal["overlapping", "all"] = Field(
        "overlapping", description="Match views whose boxes overlap under current registrations, or all pairs."
    )
    group_by: list[Literal["channel", "illumination", "tile", "angle"]] = Field(
        default_factory=list,
        description="Only pair views that share these attributes (e.g. ['channel'] matches within a channel).",
    )
    matching_per_round: dict[MatchingRound, dict[str, Any]] = Field(
        default_factory=dict,
        description="Matching parameters that differ by round, e.g. {'rigid': {'search_radius': 300, "
        "'max_epsilon': 100}, 'affine': {'search_radius': 100, 'max_epsilon': 30}} (Rhapso's *_rigid / *_affine / "
        "*_split_affine keys); names and units are those of `matching`, which gives every value not set here.",
    )

    @field_validator("prealign", "flatfield", mode="before")
    @classmethod
    def _on_off_from_yaml(cls, v: Any) -> Any:
        # YAML 1.1 reads a bare on / off (in a parameter file or --set) as true / false.
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v

    @field_validator("matching_per_round")
    @classmethod
    def _matching_fields(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for rnd, values in v.items():
            for key, value in values.items():
                if key not in MatchingParams.model_fields:
                    raise ValueError(f"{rnd}.{key}: not a matching parameter")
                try:
                    MatchingParams.model_validate({key: value})
                except ValidationError as exc:
                    raise ValueError(f"{rnd}.{key}: {exc.errors()[0]['msg']} (got {value!r})") from None
        return v

    grouping: list[Literal["channel", "illumination", "tile"]] = Field(
        default_factory=lambda: ["channel", "illumination"],
        description="Views of one timepoint that differ only in these attributes form one group solved with one "
        "registration (BigStitcher's --groupChannels --groupIllums [--groupTiles]); default channels and "
        "illuminations, which a microscope acquires at the same stage position. Views are matched only "
        "against views of other groups that share the grouped attributes' values. [] solves every view alone.",
    )
    timepoints: Literal["individually", "reference", "all_to_all", "all_to_all_range"] = Field(
        "individually",
        description="Registration across timepoints (BigStitcher-Spark's --registrationTP): 'individually' "
        "solves each timepoint alone (each keeps its first view fixed); 'reference' also matches every "
        "timepoint to `reference_timepoint` and solves all together; 'all_to_all' matches every pair of "
        "timepoints; 'all_to_all_range' those at most `timepoint_range` apart.",
    )
    reference_timepoint: int | None = Field(
        None, description="Timepoint id the others are registered to ('reference' mode) and whose first view "
        "group stays fixed (cross-timepoint modes); None: the first selected timepoint.",
    )
    timepoint_range: int = Field(
        5, ge=1, description="'all_to_all_range': match timepoints at most this many ids apart (timepoints).",
    )
    split_affine: bool = Field(
        False,
        description="After the last round, split every view into sub-views (parameters in `split`) and solve "
        "them affine, tied by fake correspondences: for deep tiles that one affine cannot fit.",
    )


class RuntimeParams(StageParams):
    """Where and how wide the tasks run."""

    ray_address: str | None = Field(
        None, description="Ray cluster address ('ray://head:10001' or 'auto'); None starts a local Ray."
    )
    num_cpus: int | None = Field(None, ge=1, description="CPU cap for a local Ray (cores); None: all cores.")
    object_store_memory_gb: float | None = Field(None, gt=0, description="Local Ray object store (GiB).")
    use_ray: bool = Field(
        True, description="False runs tasks in threads of the flow process (--no-ray); True lets "
        "local_threads_max_cpu_s decide for a run without ray_address."
    )
    local_threads_max_cpu_s: float = Field(
        30.0, ge=0,
        description="Without ray_address (and no Ray already running), a run whose planned CPU work "
        "(rhapso plan, core-seconds, the stages it runs) is at most this, and whose tasks fit the "
        "memory available, runs its tasks in threads of the flow process instead of starting a local "
        "Ray (whose start costs 10-15 s per run; rhapso_core/executor.py says why 30); 0: always a "
        "local Ray (--ray).",
    )
    read_cache_mb: float = Field(
        256.0, ge=0,
        description="A run's own process keeps up to this many MiB of decoded image chunks (local "
        "zarr) for what runs in it, which reads the same tiles again and again "
        "(rhapso_core/io/chunk_cache.py): every stage when the tasks run in threads (counted in the "
        "memory the threads need); with Ray, the steps the flow runs itself (parameter resolution, "
        "image checks, overlap fits, after-solve checks, QC; counted in the solve's memory). "
        "0: no cache. Ray workers never keep one.",
    )
    data_roots: list[str] | None = Field(
        None,
        description="Folders or s3:// prefixes every path a run reads or writes must resolve inside "
        "(the XML, its images and point store, the outputs); None: no restriction, unless the "
        "environment variable RHAPSO_DATA_ROOTS lists some (separated by ':' or ',', URIs by ','). "
        "For a service that runs XMLs written by others.",
    )


class PipelineParams(StageParams):
    detection: DetectionParams = Field(default_factory=DetectionParams)
    matching: MatchingParams = Field(default_factory=MatchingParams)
    solver: SolverParams = Field(default_factory=SolverParams)
    alignment: AlignmentParams = Field(default_factory=AlignmentParams)
    fusion: FusionParams = Field(default_factory=FusionParams)
    intensity: IntensityParams = Field(
        default_factory=IntensityParams,
        description="Intensity correction, run by the alignment flow after its last round when intensity.enabled.",
    )
    runtime: RuntimeParams = Field(default_factory=RuntimeParams)
    qc: QCParams = Field(default_factory=QCParams)
    verify: VerifyParams = Field(
        default_factory=VerifyParams,
        description="After each round's solve: overlaps measured before / after, tiles made worse reverted.",
    )
    pair_retry: RetryParams = Field(
        default_factory=RetryParams,
        description="Failed pairs retried with escalations (overlap re-detection, finer, wider, rotation).",
    )
    split: SplitParams = Field(default_factory=SplitParams, description="Split-dataset / split-affine (alignment.split_affine).")
    stitching: StitchingParams = Field(
        default_factory=StitchingParams, description="Phase-correlation rounds (alignment.rounds: phase)."
    )
    views: ViewSelection = Field(
        default_factory=ViewSelection,
        description="Views every stage works on (BigStitcher-Spark's --channelId, --illuminationId, --tileId, "
        "--angleId, --timepointId); default all.",
    )
    synthetic: SyntheticParams = Field(
        default_factory=SyntheticParams, description="The generated dataset of `rhapso demo` and `rhapso synth`."
    )

    @model_validator(mode="after")
    def _flatfield_needs_the_offset(self) -> "PipelineParams":
        # Refused with the other parameter errors, before any flow or server starts.
        if self.alignment.flatfield == "estimate" and self.intensity.dark_level is None:
            raise ValueError(
                "alignment.flatfield=estimate needs intensity.dark_level: the camera's offset in counts (its "
                "documented value, often 100), under the signal that the fall-off scales")
        return self

    def round_params(self, kind: RoundKind, round_name: MatchingRound | None = None) -> tuple[MatchingParams, SolverParams]:
        """Matching and solver parameters of one alignment round.

        ``round_name`` picks the per-round matching values (``alignment.matching_per_round``)
        when it differs from ``kind`` (the split-affine solve is an affine round named
        ``"split_affine"``). A round's own ``lambda_value`` applies to affine rounds only,
        like the shared one.
        """
        per_round = self.alignment.matching_per_round.get(round_name or kind, {})
        base = self.matching.model_validate({**self.matching.model_dump(), **per_round}) if per_round else self.matching
        lam_m = base.lambda_value if kind == "affine" else 0.0
        lam_s = self.solver.lambda_value if kind == "affine" else 0.0
        m = base.model_copy(update={"model": kind, "lambda_value": lam_m})
        if self.solver.model == "auto":
            # Validation picks the round's model among those no more flexible than its kind.
            s = self.solver.model_copy(update={"max_model": kind, "lambda_value": lam_s})
        else:
            s = self.solver.model_copy(update={"model": kind, "lambda_value": lam_s})
        return m, s
