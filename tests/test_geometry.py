"""Grid, screenshot pixels and input points: table tests plus hypothesis round trips."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import GeometryError
from agent.geometry import ScreenGeometry

MAPPING_CASES = [
    # (geometry, grid point, expected input point)
    (ScreenGeometry(1920, 1080), (500, 250), (960, 270)),
    (ScreenGeometry(1920, 1080), (0, 0), (0, 0)),
    (ScreenGeometry(1920, 1080), (1000, 1000), (1919, 1079)),
    (ScreenGeometry(2560, 1600, scale=2), (500, 500), (640, 400)),
    (ScreenGeometry(2560, 1600, scale=2), (1000, 1000), (1279, 799)),
    (ScreenGeometry(1280, 800), (500, 500), (640, 400)),
    (ScreenGeometry(1024, 768, origin_x=-1024), (0, 0), (-1024, 0)),
    (ScreenGeometry(1024, 768, origin_x=-1024), (1000, 1000), (-1, 767)),
    (ScreenGeometry(1024, 768, origin_x=1920, origin_y=312), (500, 500), (2432, 696)),
    (ScreenGeometry(3840, 2160, scale=1.5), (1000, 0), (2559, 0)),
    (ScreenGeometry(1, 1), (1000, 1000), (0, 0)),
]


@pytest.mark.parametrize(("geometry", "grid", "expected"), MAPPING_CASES)
def test_grid_to_point_table(
    geometry: ScreenGeometry, grid: tuple[int, int], expected: tuple[int, int]
) -> None:
    x, y = geometry.grid_to_point(*grid)
    assert abs(x - expected[0]) <= 2
    assert abs(y - expected[1]) <= 2
    assert geometry.contains_point(x, y)


def test_full_hd_centre_is_exact() -> None:
    assert ScreenGeometry(1920, 1080).grid_to_point(500, 250) == (960, 270)


def test_hidpi_centre_is_exact() -> None:
    assert ScreenGeometry(2560, 1600, scale=2).grid_to_point(500, 500) == (640, 400)


@pytest.mark.parametrize(
    "grid", [(-0.1, 5), (5, 1000.5), (math.nan, 1), (1, math.inf), (2000, 2000)], ids=str
)
def test_grid_outside_range_rejected(grid: tuple[float, float]) -> None:
    with pytest.raises(GeometryError, match="0 to 1000"):
        ScreenGeometry(1920, 1080).grid_to_point(*grid)


@pytest.mark.parametrize(
    ("geometry", "point"),
    [
        (ScreenGeometry(1920, 1080), (1920, 10)),
        (ScreenGeometry(1920, 1080), (-1, 10)),
        (ScreenGeometry(2560, 1600, scale=2), (1280, 10)),
        (ScreenGeometry(1024, 768, origin_x=-1024), (0, 10)),
        (ScreenGeometry(1024, 768, origin_y=100), (10, 99)),
    ],
)
def test_point_outside_region_rejected(geometry: ScreenGeometry, point: tuple[int, int]) -> None:
    with pytest.raises(GeometryError, match="outside the captured region"):
        geometry.point_to_grid(*point)


@pytest.mark.parametrize(
    "arguments",
    [
        dict(width=0, height=10),
        dict(width=10, height=-1),
        dict(width=10, height=10, scale=0),
        dict(width=10, height=10, scale=math.nan),
        dict(width=10, height=10, origin_x=math.inf),
    ],
    ids=str,
)
def test_invalid_geometry_rejected(arguments: dict) -> None:
    with pytest.raises(GeometryError):
        ScreenGeometry(**arguments)


geometries = st.builds(
    ScreenGeometry,
    width=st.integers(16, 8000),
    height=st.integers(16, 5000),
    scale=st.sampled_from([1.0, 1.25, 1.5, 2.0, 3.0]),
    origin_x=st.integers(-8000, 8000).map(float),
    origin_y=st.integers(-5000, 5000).map(float),
)
grid_values = st.floats(0, 1000, allow_nan=False)


@given(geometries, grid_values, grid_values)
def test_grid_point_round_trip(geometry: ScreenGeometry, gx: float, gy: float) -> None:
    px, py = geometry.grid_to_point(gx, gy)
    assert geometry.contains_point(px, py)
    back_x, back_y = geometry.point_to_grid(px, py)
    # Rounding to whole points moves a point by at most half a point.
    tolerance_x = 1000 / max(geometry.width_points - 1, 1) * 0.5 + 1e-6
    tolerance_y = 1000 / max(geometry.height_points - 1, 1) * 0.5 + 1e-6
    assert abs(back_x - gx) <= tolerance_x
    assert abs(back_y - gy) <= tolerance_y


@given(geometries, grid_values, grid_values)
def test_grid_pixel_round_trip(geometry: ScreenGeometry, gx: float, gy: float) -> None:
    x, y = geometry.grid_to_pixel(gx, gy)
    assert 0 <= x <= geometry.width - 1
    assert 0 <= y <= geometry.height - 1
    back_x, back_y = geometry.pixel_to_grid(x, y)
    assert math.isclose(back_x, gx, abs_tol=1e-6)
    assert math.isclose(back_y, gy, abs_tol=1e-6)


@given(geometries, st.floats(0, 1), st.floats(0, 1))
def test_pixel_point_round_trip(geometry: ScreenGeometry, fx: float, fy: float) -> None:
    x, y = fx * (geometry.width - 1), fy * (geometry.height - 1)
    point = geometry.pixel_to_point(x, y)
    back = geometry.point_to_pixel(*point)
    assert math.isclose(back[0], x, abs_tol=1e-6)
    assert math.isclose(back[1], y, abs_tol=1e-6)


@given(geometries)
def test_grid_corners_stay_on_screen(geometry: ScreenGeometry) -> None:
    for corner in [(0, 0), (1000, 0), (0, 1000), (1000, 1000)]:
        assert geometry.contains_point(*geometry.grid_to_point(*corner))
