"""Built-in image-caption data: procedurally generated scenes of simple shapes with true captions.

Used when no data root is configured, so that training and retrieval run without any download.
Each image is a plain background with one or two filled shapes placed on a 3x3 grid. Every
caption states the background and, for each shape, its size, colour, kind and grid cell, so a
caption determines its scene and retrieval is learnable. Scenes depend only on
(seed, split, index), so `load_image` renders any image on demand and nothing is stored.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import PIL.Image
import PIL.ImageDraw

from multimae_jax.data.captioned_images import CaptionedImages

SPLITS = ("train", "val", "test")

# Mixed into the seed so that the splits draw from unrelated random streams.
_SPLIT_SALTS = {"train": 0x7A11, "val": 0x0FA1, "test": 0x7E57}

SHAPES = ("circle", "square", "triangle", "star", "diamond")

# Well separated fill colours, none of them close to a background colour.
COLORS = {
    "red": (220, 30, 30),
    "orange": (250, 140, 0),
    "yellow": (240, 220, 20),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "purple": (140, 40, 170),
}

BACKGROUNDS = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
}

# Shape radius as a fraction of the image side. A grid cell is 1/3 of the side, so a large
# shape (0.14) plus the maximum jitter (0.01) stays inside its cell (half-width 1/6). The
# jitter is also small enough that every shape covers the centre of its cell.
SIZE_RADII = {"small": 0.08, "large": 0.14}
_MAX_JITTER = 0.01

# Interchangeable words for each size.
_SIZE_WORDS = {"small": ("small", "little"), "large": ("large", "big")}

# Two phrasings of each grid cell, indexed by (row, column) with row 0 at the top.
_POSITION_PHRASES = {
    (0, 0): ("in the top left corner", "at the top left"),
    (0, 1): ("at the top center", "in the top middle"),
    (0, 2): ("in the top right corner", "at the top right"),
    (1, 0): ("on the left side", "at the center left"),
    (1, 1): ("in the center", "in the middle"),
    (1, 2): ("on the right side", "at the center right"),
    (2, 0): ("in the bottom left corner", "at the bottom left"),
    (2, 1): ("at the bottom center", "in the bottom middle"),
    (2, 2): ("in the bottom right corner", "at the bottom right"),
}

# Caption templates. Fields: {bg} background colour; {obj}, {obj1}, {obj2} an object with an
# article ("a large red circle"); {bare1}, {bare2} the same without article; {pos}, {pos1},
# {pos2} a position phrase; {rel} the relation of object 1 to object 2.
_ONE_SHAPE_TEMPLATES = (
    "{obj} {pos} on a {bg} background",
    "a {bg} background with {obj} {pos}",
    "{pos} there is {obj} on a {bg} background",
    "{bare} {pos}, {bg} background",
    "there is {obj} {pos} and the background is {bg}",
    "a picture of {obj} {pos} on {bg}",
    "{obj} sits {pos} of a {bg} image",
)
_TWO_SHAPE_TEMPLATES = (
    "{obj1} {pos1} and {obj2} {pos2} on a {bg} background",
    "a {bg} background with {obj1} {pos1} and {obj2} {pos2}",
    "two shapes on a {bg} background, {obj1} {pos1} and {obj2} {pos2}",
    "{obj1} {pos1} is {rel} {obj2} {pos2}, on a {bg} background",
    "there is {obj1} {pos1} and {obj2} {pos2}, the background is {bg}",
    "{bare1} {pos1}, {bare2} {pos2}, {bg} background",
    "{pos1} there is {obj1}, and {pos2} there is {obj2}, on a {bg} background",
)


@dataclasses.dataclass(frozen=True)
class PlacedShape:
    """One filled shape of a scene.

    Attributes:
        shape: One of SHAPES.
        color: A key of COLORS.
        size: A key of SIZE_RADII.
        row: Grid row, 0 (top) to 2 (bottom).
        column: Grid column, 0 (left) to 2 (right).
        offset: (dx, dy) shift of the centre from the cell centre, as a fraction of the image side.
    """

    shape: str
    color: str
    size: str
    row: int
    column: int
    offset: tuple[float, float]


@dataclasses.dataclass(frozen=True)
class Scene:
    """A background colour (a key of BACKGROUNDS) and one or two shapes in distinct grid cells."""

    background: str
    shapes: tuple[PlacedShape, ...]


def make_builtin_split(
    split: str, num_images: int, image_size: int, seed: int = 0, captions_per_image: int = 5
) -> CaptionedImages:
    """Generate a split of shape scenes with `captions_per_image` true captions per image.

    Args:
        split: "train", "val" or "test". Each split uses its own random stream.
        num_images: Number of scenes.
        image_size: Side of the rendered square images in pixels.
        seed: Base seed; the same (seed, split, index) always gives the same scene and captions.
        captions_per_image: Captions per image, each from a different template while templates last.

    Returns:
        The split, named "builtin/<split>", with image ids "builtin/<split>/<index:06d>" and a
        `load_image` that renders uint8 [image_size, image_size, 3] RGB.
    """
    _validate_arguments(split, num_images, image_size, seed, captions_per_image)

    image_ids = []
    captions = []
    caption_to_image = []
    for index in range(num_images):
        scene = sample_scene(seed, split, index)
        image_ids.append(f"builtin/{split}/{index:06d}")
        caption_rng = np.random.default_rng([seed, _SPLIT_SALTS[split], index, 1])
        for caption in describe_scene(scene, captions_per_image, caption_rng):
            captions.append(caption)
            caption_to_image.append(index)

    return CaptionedImages(
        name=f"builtin/{split}",
        image_ids=tuple(image_ids),
        captions=tuple(captions),
        caption_to_image=np.asarray(caption_to_image, dtype=np.int32),
        load_image=functools.partial(render_builtin_image, seed, split, image_size),
    )


def sample_scene(seed: int, split: str, index: int) -> Scene:
    """Draw the scene of image `index`, a pure function of (seed, split, index)."""
    rng = np.random.default_rng([seed, _SPLIT_SALTS[split], index, 0])
    background = _choice(rng, tuple(BACKGROUNDS))
    num_shapes = int(rng.integers(1, 3))

    # Distinct cells keep the shapes apart, and a distinct (shape, colour) pair lets a caption
    # call each shape "the <colour> <shape>" without ambiguity.
    cells = rng.choice(9, size=num_shapes, replace=False)
    kinds = rng.choice(len(SHAPES) * len(COLORS), size=num_shapes, replace=False)

    shapes = []
    for cell, kind in zip(cells, kinds):
        shape_index, color_index = divmod(int(kind), len(COLORS))
        offset = rng.uniform(-_MAX_JITTER, _MAX_JITTER, size=2)
        shapes.append(
            PlacedShape(
                shape=SHAPES[shape_index],
                color=tuple(COLORS)[color_index],
                size=_choice(rng, tuple(SIZE_RADII)),
                row=int(cell) // 3,
                column=int(cell) % 3,
                offset=(float(offset[0]), float(offset[1])),
            )
        )

    return Scene(background=background, shapes=tuple(shapes))


def render_builtin_image(seed: int, split: str, image_size: int, index: int) -> np.ndarray:
    """Render image `index` of a built-in split as uint8 [image_size, image_size, 3] RGB."""
    return render_scene(sample_scene(seed, split, index), image_size)


def render_scene(scene: Scene, image_size: int) -> np.ndarray:
    """Draw a scene with Pillow, without anti-aliasing, as uint8 [image_size, image_size, 3] RGB."""
    image = PIL.Image.new("RGB", (image_size, image_size), BACKGROUNDS[scene.background])
    draw = PIL.ImageDraw.Draw(image)

    for placed in scene.shapes:
        center_x = ((placed.column + 0.5) / 3.0 + placed.offset[0]) * image_size
        center_y = ((placed.row + 0.5) / 3.0 + placed.offset[1]) * image_size
        radius = SIZE_RADII[placed.size] * image_size
        fill = COLORS[placed.color]
        _draw_shape(draw, placed.shape, center_x, center_y, radius, fill)

    return np.asarray(image, dtype=np.uint8)


def describe_scene(scene: Scene, num_captions: int, rng: np.random.Generator) -> list[str]:
    """Write `num_captions` true captions of a scene.

    Templates are used in a random order without repetition until all have been used. Size
    synonyms, position phrasings and the order of the two shapes vary per caption.
    """
    templates = _ONE_SHAPE_TEMPLATES if len(scene.shapes) == 1 else _TWO_SHAPE_TEMPLATES
    order = rng.permutation(len(templates))

    captions = []
    for caption_index in range(num_captions):
        template = templates[int(order[caption_index % len(templates)])]
        shapes = list(scene.shapes)
        if len(shapes) == 2 and rng.random() < 0.5:
            shapes.reverse()
        fields = {"bg": scene.background}
        if len(shapes) == 1:
            fields.update(_shape_fields(shapes[0], "", rng))
        else:
            fields.update(_shape_fields(shapes[0], "1", rng))
            fields.update(_shape_fields(shapes[1], "2", rng))
            fields["rel"] = _relation(shapes[0], shapes[1])
        captions.append(template.format(**fields))

    return captions


def _shape_fields(placed: PlacedShape, suffix: str, rng: np.random.Generator) -> dict[str, str]:
    """Template fields obj/bare/pos for one shape, with randomly chosen synonyms."""
    size_word = _choice(rng, _SIZE_WORDS[placed.size])
    bare = f"{size_word} {placed.color} {placed.shape}"
    return {
        f"obj{suffix}": f"a {bare}",
        f"bare{suffix}": bare,
        f"pos{suffix}": _choice(rng, _POSITION_PHRASES[(placed.row, placed.column)]),
    }


def _relation(first: PlacedShape, second: PlacedShape) -> str:
    """Describe where `first` lies relative to `second`, e.g. "above and to the left of"."""
    parts = []
    if first.row < second.row:
        parts.append("above")
    elif first.row > second.row:
        parts.append("below")
    if first.column < second.column:
        parts.append("to the left of")
    elif first.column > second.column:
        parts.append("to the right of")

    # The shapes sit in distinct cells, so at least one part applies.
    return " and ".join(parts)


def _draw_shape(
    draw: PIL.ImageDraw.ImageDraw, shape: str, x: float, y: float, radius: float, fill: tuple[int, int, int]
) -> None:
    """Draw one filled shape centred at (x, y) pixels that fits in a circle of `radius` pixels."""
    if shape == "circle":
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill)
    elif shape == "square":
        # A slightly smaller square keeps its area close to that of the circle.
        half = 0.85 * radius
        draw.rectangle((x - half, y - half, x + half, y + half), fill=fill)
    elif shape == "triangle":
        points = [(x, y - radius), (x + 0.866 * radius, y + 0.5 * radius), (x - 0.866 * radius, y + 0.5 * radius)]
        draw.polygon(points, fill=fill)
    elif shape == "star":
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, radius, 0.45 * radius)
        points = [(x + r * np.cos(a), y + r * np.sin(a)) for r, a in zip(radii, angles)]
        draw.polygon(points, fill=fill)
    elif shape == "diamond":
        points = [(x, y - radius), (x + 0.75 * radius, y), (x, y + radius), (x - 0.75 * radius, y)]
        draw.polygon(points, fill=fill)
    else:
        raise ValueError(f"Unknown shape {shape!r}; expected one of {SHAPES}.")


def _choice(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    """Pick one option uniformly at random."""
    return options[int(rng.integers(len(options)))]


def _validate_arguments(split: str, num_images: int, image_size: int, seed: int, captions_per_image: int) -> None:
    """Raise ValueError for arguments that cannot produce a split."""
    if split not in SPLITS:
        raise ValueError(f"Unknown built-in split {split!r}; expected one of {SPLITS}.")
    if num_images < 1:
        raise ValueError(f"num_images must be at least 1, got {num_images}.")
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels so that small shapes stay visible, got {image_size}.")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}.")
    if captions_per_image < 1:
        raise ValueError(f"captions_per_image must be at least 1, got {captions_per_image}.")
