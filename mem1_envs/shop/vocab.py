"""The word tables the catalog generator draws from.

A 3-level taxonomy (department > category > product type). Each department has its own
attributes (phrases such as "gluten free" that the reward matches) and option kinds (size,
color, flavor... with their values). Filler sentences for bullets and descriptions never contain
an attribute phrase, so an attribute appears in a product's text exactly when the product has it
(the reward's substring rule and the numba kernel's id rule then agree; a test checks it).

>>> len(TYPES) >= 40, TYPES[0].path
(True, ('Grocery & Gourmet Food', 'Snacks', 'potato chips'))
"""

from __future__ import annotations

from dataclasses import dataclass

TAXONOMY: dict[str, dict[str, tuple[str, ...]]] = {
    "Grocery & Gourmet Food": {
        "Snacks": ("potato chips", "trail mix", "protein bars", "beef jerky"),
        "Beverages": ("green tea", "cold brew coffee", "sparkling water"),
        "Pantry": ("olive oil", "pasta sauce", "peanut butter"),
    },
    "Clothing, Shoes & Jewelry": {
        "Men's Clothing": ("t-shirt", "cargo shorts", "hoodie"),
        "Women's Clothing": ("yoga pants", "maxi dress", "cardigan"),
        "Shoes": ("running shoes", "hiking boots", "slippers"),
    },
    "Beauty & Personal Care": {
        "Skin Care": ("face moisturizer", "eye cream", "sunscreen lotion"),
        "Hair Care": ("shampoo", "hair conditioner", "hair oil"),
        "Makeup": ("lipstick", "mascara", "foundation"),
    },
    "Home & Kitchen": {
        "Bedding": ("bed sheets", "duvet cover", "pillow"),
        "Furniture": ("office chair", "coffee table", "bookshelf"),
        "Kitchen": ("chef knife", "frying pan", "coffee mug"),
    },
    "Electronics": {
        "Audio": ("wireless earbuds", "bluetooth speaker", "headphones"),
        "Accessories": ("phone case", "usb cable", "power bank"),
        "Computers": ("keyboard", "computer mouse", "monitor stand"),
    },
}

# Attribute phrases per department (no phrase is a substring of another department's filler).
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "Grocery & Gourmet Food": (
        "gluten free",
        "non gmo",
        "certified organic",
        "low sugar",
        "keto friendly",
        "high protein",
        "dairy free",
        "kosher certified",
        "no artificial flavors",
        "vegan friendly",
    ),
    "Clothing, Shoes & Jewelry": (
        "machine washable",
        "moisture wicking",
        "quick drying",
        "slim fit",
        "relaxed fit",
        "breathable fabric",
        "water resistant",
        "hand wash only",
        "elastic waistband",
        "non slip sole",
    ),
    "Beauty & Personal Care": (
        "paraben free",
        "cruelty free",
        "fragrance free",
        "sulfate free",
        "dermatologist tested",
        "long lasting",
        "travel size",
        "sensitive skin",
        "oil free",
        "natural ingredients",
    ),
    "Home & Kitchen": (
        "easy to clean",
        "dishwasher safe",
        "space saving",
        "easy assembly",
        "heavy duty",
        "stain resistant",
        "wrinkle resistant",
        "lead free",
        "eco friendly",
        "solid wood",
    ),
    "Electronics": (
        "noise cancelling",
        "fast charging",
        "long battery life",
        "wireless connectivity",
        "shockproof design",
        "plug and play",
        "high resolution",
        "usb type c",
        "ultra lightweight",
        "voice control",
    ),
}

# Option kinds per department, each with its value pool.
OPTIONS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "Grocery & Gourmet Food": (
        (
            "flavor",
            (
                "original",
                "sea salt",
                "barbecue",
                "honey mustard",
                "vanilla",
                "chocolate",
                "lemon ginger",
                "spicy chili",
            ),
        ),
        ("size", ("6 pack", "12 pack", "24 count", "1 pound", "2 pound", "16 ounce")),
    ),
    "Clothing, Shoes & Jewelry": (
        (
            "color",
            ("black", "navy blue", "heather grey", "olive green", "burgundy", "white", "khaki", "coral pink"),
        ),
        ("size", ("x-small", "small", "medium", "large", "x-large", "xx-large")),
    ),
    "Beauty & Personal Care": (
        ("scent", ("unscented", "lavender", "coconut", "citrus", "rose", "eucalyptus")),
        ("size", ("1 fl oz", "3.4 fl oz", "8 fl oz", "16 fl oz", "2 pack", "3 pack")),
    ),
    "Home & Kitchen": (
        ("color", ("black", "white", "walnut brown", "charcoal grey", "sage green", "ivory", "navy blue")),
        ("size", ("twin", "full", "queen", "king", "small", "medium", "large")),
    ),
    "Electronics": (
        ("color", ("black", "white", "silver", "midnight blue", "rose gold", "space grey")),
        ("style", ("standard", "pro", "mini", "max", "2 pack", "bundle")),
    ),
}

PRICE_RANGES: dict[str, tuple[float, float]] = {
    "Grocery & Gourmet Food": (3.0, 45.0),
    "Clothing, Shoes & Jewelry": (9.0, 120.0),
    "Beauty & Personal Care": (4.0, 60.0),
    "Home & Kitchen": (8.0, 300.0),
    "Electronics": (7.0, 250.0),
}

BRANDS: tuple[str, ...] = (
    "Norvale",
    "Quimby",
    "Brackwell",
    "Tazora",
    "Velmont",
    "Orchidia",
    "Pemberly",
    "Zantro",
    "Halvik",
    "Corvenna",
    "Ludmoor",
    "Yarrowby",
    "Fenwicke",
    "Marlowe",
    "Kestara",
    "Dunhaven",
    "Pixwell",
    "Rundle",
    "Solvaro",
    "Thimbleco",
    "Wexmoor",
    "Axlund",
    "Bellacq",
    "Crestino",
    "Drovia",
    "Elmquist",
    "Gildane",
    "Hobbrook",
    "Ingvar",
    "Jorvik",
)

ADJECTIVES: tuple[str, ...] = (
    "premium",
    "classic",
    "everyday",
    "deluxe",
    "signature",
    "essential",
    "modern",
    "original",
    "select",
    "ultimate",
)

# Filler: no attribute phrase, option value or type name may occur in these (tested).
BULLET_FILLER: tuple[str, ...] = (
    "Backed by our friendly customer service team",
    "Packed with care and shipped in recyclable packaging",
    "Makes a thoughtful gift for friends and family",
    "Designed and tested by our in-house team",
    "Satisfaction guaranteed or your money back",
    "Perfect for home, office or on the go",
)

DESCRIPTION_FILLER: tuple[str, ...] = (
    "Our team spent many months refining every detail of this product before it reached you.",
    "We believe good things should be simple, honest and made to be enjoyed every day.",
    "Each unit is inspected before it leaves our warehouse so that it arrives ready to use.",
    "Customers tell us they keep coming back because it simply does what it promises.",
    "Store it in a cool place away from direct sunlight to keep it at its best.",
    "We work with trusted partners who share our commitment to quality and fairness.",
    "If anything is not right with your order, reach out and we will make it right.",
    "It fits easily into a busy routine and never asks for more attention than it deserves.",
    "Thousands of households already rely on it, and we hope yours will be next.",
    "The packaging is designed to protect the contents while using as little material as possible.",
    "Please read the instructions on the package before first use.",
    "Our support team answers every message within one business day.",
    "The product shown in the pictures may differ slightly from the one you receive.",
    "Every batch is produced in small runs so that we can keep a close eye on consistency.",
    "We keep improving it based on what our customers tell us in their reviews.",
    "It was developed with input from people who use products like this every single day.",
)

ATTRIBUTE_SENTENCES: tuple[str, ...] = (
    "This item is {attr}, which our customers value.",
    "Made to be {attr} without compromise.",
    "You can count on it being {attr}.",
)


@dataclass(frozen=True)
class ProductType:
    """A leaf of the taxonomy: its index, names at each level and the nouns of its name."""

    index: int
    department: str
    category: str
    name: str

    @property
    def path(self) -> tuple[str, str, str]:
        return (self.department, self.category, self.name)

    @property
    def nouns(self) -> frozenset[str]:
        """The words of the type's name: what WebShop's reward calls the title nouns."""
        return frozenset(self.name.replace("-", " ").split())


def _types() -> tuple[ProductType, ...]:
    types = []
    for department, categories in TAXONOMY.items():
        for category, names in categories.items():
            for name in names:
                types.append(ProductType(len(types), department, category, name))
    return tuple(types)


TYPES: tuple[ProductType, ...] = _types()
DEPARTMENTS: tuple[str, ...] = tuple(TAXONOMY)
