"""Reading a shop's knowledge-base folder (formats: docs/design/shop-knowledge-base.md).

Every file is validated with a strict schema; a problem raises `KnowledgeBaseError` naming the
file and the entry, so a shop owner's typo fails loudly at start-up or reload instead of
silently dropping facts. Missing files are allowed (a shop may have no promotions).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import yaml
from pydantic import Field, ValidationError, field_validator

from shop.config import LocalizedList, LocalizedText, StrictModel
from shop.knowledge.entries import KnowledgeEntry
from shop.knowledge.vocabulary import SynonymGroup
from shop.text import Language, language_of

_ID = r"^[a-z0-9][a-z0-9-]*$"


class KnowledgeBaseError(ValueError):
    """A knowledge-base file is missing a field, malformed, or contradicts itself."""


class FaqEntry(StrictModel):
    id: str = Field(..., pattern=_ID)
    title: LocalizedText
    questions: LocalizedList
    answer: LocalizedText


class FaqFile(StrictModel):
    entries: list[FaqEntry]


class Product(StrictModel):
    sku: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$")
    name: LocalizedText
    category: LocalizedText
    sizes: list[str] = Field(..., min_length=1)
    colours: list[LocalizedText] = Field(..., min_length=1)
    stock: dict[str, int]
    price: float = Field(..., ge=0)
    currency: str = "CNY"
    description: LocalizedText

    @field_validator("stock")
    @classmethod
    def _no_negative_stock(cls, stock: dict[str, int]) -> dict[str, int]:
        if any(count < 0 for count in stock.values()):
            raise ValueError("stock counts cannot be negative")
        return stock


class Promotion(StrictModel):
    id: str = Field(..., pattern=_ID)
    title: LocalizedText
    starts: datetime
    ends: datetime
    details: LocalizedText

    @field_validator("starts", "ends")
    @classmethod
    def _with_offset(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("needs a UTC offset, e.g. 2026-11-01T00:00:00+08:00")
        return value


class PromotionsFile(StrictModel):
    promotions: list[Promotion]


class SynonymEntry(StrictModel):
    canonical: str = Field(..., min_length=1, description="The term the entries use.")
    variants: list[str] = Field(..., min_length=1, description="How shoppers say it.")


class VocabularyFile(StrictModel):
    synonyms: list[SynonymEntry] = Field(default_factory=list)


def load_entries(folder: Path) -> list[KnowledgeEntry]:
    """Every entry of the knowledge base in `folder`; ids are unique across files."""
    if not folder.is_dir():
        raise KnowledgeBaseError(f"knowledge base folder {folder} does not exist")
    entries: list[KnowledgeEntry] = []
    for name, read in READERS.items():
        path = folder / name
        if not path.exists():
            continue
        try:
            entries.extend(read(path))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise KnowledgeBaseError(f"{path}: {where}: {first['msg']}") from None
        except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise KnowledgeBaseError(f"{path}: not valid {path.suffix[1:]}: {exc}") from None
    seen: set[str] = set()
    for entry in entries:
        if entry.id in seen:
            raise KnowledgeBaseError(f"{folder}: the id {entry.id!r} is used twice")
        seen.add(entry.id)
    return entries


def _faq(path: Path) -> list[KnowledgeEntry]:
    data = FaqFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    out = []
    for faq in data.entries:
        answer = faq.answer.by_language()
        out.append(KnowledgeEntry(
            id=f"faq/{faq.id}", kind="faq", title=faq.title.by_language(), text=answer,
            documents=(" ".join([*faq.questions.en, faq.title.en]),
                       " ".join([*faq.questions.zh, faq.title.zh]),
                       faq.answer.en, faq.answer.zh),
            questions=(*faq.questions.en, *faq.questions.zh),
            approved_answer=answer,
        ))
    return out


_HEADING = re.compile(r"^## +(?P<id>[a-z0-9][a-z0-9-]*): *(?P<en>.+?) */ *(?P<zh>.+?) *$")


def _policies(path: Path) -> list[KnowledgeEntry]:
    out = []
    sections = re.split(r"^(?=## )", path.read_text(encoding="utf-8"), flags=re.M)
    for section in sections:
        if not section.startswith("## "):
            continue  # text before the first section
        heading, _, body = section.partition("\n")
        match = _HEADING.match(heading.strip())
        if match is None:
            raise KnowledgeBaseError(
                f"{path}: heading {heading.strip()!r} is not '## <id>: <English title> / "
                "<中文标题>'")
        paragraphs = [p.strip() for p in body.split("\n\n") if p.strip()]
        by_language: dict[Language, list[str]] = {"en": [], "zh": []}
        for paragraph in paragraphs:
            by_language[language_of(paragraph)].append(paragraph)
        if not by_language["en"] or not by_language["zh"]:
            raise KnowledgeBaseError(
                f"{path}: section {match['id']!r} needs paragraphs in English and Chinese")
        text = {lang: "\n\n".join(parts) for lang, parts in by_language.items()}
        title = {"en": match["en"], "zh": match["zh"]}
        out.append(KnowledgeEntry(
            id=f"policy/{match['id']}", kind="policy", title=title, text=text,
            documents=(title["en"], title["zh"], *paragraphs),
        ))
    return out


def _products(path: Path) -> list[KnowledgeEntry]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, list):
        raise KnowledgeBaseError(f"{path}: expected a JSON list of products")
    out = []
    for index, item in enumerate(raw):
        try:
            product = Product.model_validate(item)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise KnowledgeBaseError(f"{path}: product {index}: {where}: {first['msg']}") from None
        _check_stock_keys(path, product)
        text = {lang: _product_facts(product, lang) for lang in ("en", "zh")}
        out.append(KnowledgeEntry(
            id=f"product/{product.sku}", kind="product", title=product.name.by_language(),
            text=text,
            documents=(product.name.en, product.name.zh,
                         f"{product.category.en} {product.name.en} {product.description.en}",
                         f"{product.category.zh} {product.name.zh} {product.description.zh}",
                         product.sku,
                         # "do you have it in navy L?": colours and sizes are matched too.
                         " ".join([product.name.en, *(c.en for c in product.colours),
                                   *product.sizes]),
                         " ".join([product.name.zh, *(c.zh for c in product.colours),
                                   *product.sizes])),
        ))
    return out


def _check_stock_keys(path: Path, product: Product) -> None:
    colours = {c.en for c in product.colours}
    for key in product.stock:
        colour, _, size = key.partition("/")
        if colour not in colours or size not in product.sizes:
            raise KnowledgeBaseError(
                f"{path}: product {product.sku}: stock key {key!r} is not '<colour>/<size>' "
                "of its own colours and sizes")


def _product_facts(product: Product, lang: Language) -> str:
    """A product as the model reads it: compact, with what is sold out rather than every
    variant's count (the question is nearly always "do you have X in Y?")."""
    colour_name = {c.en: getattr(c, lang) for c in product.colours}
    sold_out = [f"{colour_name[k.partition('/')[0]]} {k.partition('/')[2]}"
                for k, count in product.stock.items() if count == 0]
    colours = ", ".join(getattr(c, lang) for c in product.colours)
    sizes = ", ".join(product.sizes)
    price = f"{product.price:g} {product.currency}"
    if lang == "zh":
        stock = "、".join(sold_out) + " 已售罄" if sold_out else "所有颜色尺码均有货"
        return (f"{product.name.zh}（{product.sku}，{product.category.zh}）：价格 {price}；"
                f"颜色 {colours}；尺码 {sizes}；库存：{stock}。{product.description.zh}")
    stock = "sold out in " + ", ".join(sold_out) if sold_out else "every colour and size in stock"
    return (f"{product.name.en} ({product.sku}, {product.category.en}): price {price}; colours "
            f"{colours}; sizes {sizes}; stock: {stock}. {product.description.en}")


def _promotions(path: Path) -> list[KnowledgeEntry]:
    data = PromotionsFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    out = []
    for promo in data.promotions:
        if promo.ends <= promo.starts:
            raise KnowledgeBaseError(f"{path}: promotion {promo.id!r} ends before it starts")
        out.append(KnowledgeEntry(
            id=f"promo/{promo.id}", kind="promo", title=promo.title.by_language(),
            text=promo.details.by_language(),
            documents=(promo.title.en, promo.title.zh, promo.details.en, promo.details.zh),
            valid_from=promo.starts, valid_until=promo.ends,
        ))
    return out


def load_synonyms(folder: Path) -> list[SynonymGroup]:
    """The shop's synonyms and product nicknames (`vocabulary.yaml`, optional): how the shop's
    words are matched, not facts (shop/knowledge/vocabulary.py)."""
    path = folder / VOCABULARY_FILE
    if not path.exists():
        return []
    try:
        data = VocabularyFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise KnowledgeBaseError(f"{path}: {where}: {first['msg']}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise KnowledgeBaseError(f"{path}: not valid yaml: {exc}") from None
    return [SynonymGroup(item.canonical, tuple(item.variants)) for item in data.synonyms]


# The files of a knowledge-base folder and how each is read (knowledge/base.py watches these).
READERS = {"faq.yaml": _faq, "policies.md": _policies, "products.json": _products,
           "promotions.yaml": _promotions}
VOCABULARY_FILE = "vocabulary.yaml"
FILES = (*READERS, VOCABULARY_FILE)
