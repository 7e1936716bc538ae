"""Number-bearing claims in a text: what the answer guard checks against the facts.

A claim is a number with what it measures: a price with its currency, a duration, a time of
day, a date, a percentage, a quantity with its unit, a count, or a code (order and tracking
numbers, coupon codes, model names like "ip67", phone numbers, URLs) taken as written. Each is
reduced to a comparable form, so one fact written many ways is one claim:

- NFKC and simplified Chinese first (`shop.text.normalize`): full-width ２９９ is 299;
- Chinese numerals before a unit or a range word with `cn2an` (两周, 十五天, 一千零九十九元);
  English number words with `text2num` (two to four days); "a week", "half a month", 半个月;
- units in classes that convert: minutes, hours, days, weeks (7 days), months (30 days) and
  years (12 months) are one duration; kg and g, cm and mm are one quantity each; 8折 is
  20 % off. Currencies never convert: ¥299 is not $299;
- a range ("2-4天", "2至4天", "2 to 4 days") is one claim, with the range's unit on both ends;
  the facts' ranges also support each of their ends ("within 4 days");
- a clock time without am/pm ("4点") may be either half of the day.

Bare numbers below 10 are not claims ("one of our staff", "2 options"): they carry too little
to check and most are not facts. Everything here is regular expressions over one normalised
string, so a 256-token answer costs well under a millisecond.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import cn2an
from text_to_num import alpha2digit

from shop.text import normalize


@dataclass(frozen=True)
class Claim:
    """One number-bearing claim: its class, the values it may mean, and where it was found."""

    kind: str  # money:<currency> | duration | clock | date | weekday | percent | <quantity> |
    #            count | number | code | range (values: (kind, low, high))
    values: frozenset  # comparable values; a claim is supported when one of them is a fact's
    text: str  # the claim as found in the normalised text (reported, logged)
    start: int  # span in the normalised text
    end: int


# --- Chinese numerals -----------------------------------------------------------------------
_ZH_DIGITS = "零〇一二两三四五六七八九十百千万亿"
# What may follow a Chinese numeral for it to be a number here ("一般", "统一", "一下" are not).
_ZH_UNIT_AFTER = (
    "个天日周星期月年小时分钟秒元块件双条套次折岁斤克公千毫米厘码寸号倍层份台只张位家款色%到至~\\-"
    "美港欧英瓦伏安度点")
_ZH_NUMERAL = re.compile(
    rf"(?<![{_ZH_DIGITS}第周期拜])(?!一点)([{_ZH_DIGITS}]+(?:点[零〇一二三四五六七八九]+)?)"
    rf"(?=[{_ZH_UNIT_AFTER}])")
_ZH_HALF = re.compile(r"(?<![\d.])(\d+)?个?半(?=个?(?:月|年|小时|钟头|天))")
_ZH_APPROX = {"一两": "1-2", "两三": "2-3", "三四": "3-4", "四五": "4-5", "五六": "5-6",
              "六七": "6-7", "七八": "7-8", "八九": "8-9"}


def _zh_numeral(match: re.Match) -> str:
    span = match.group(1)
    if span in _ZH_APPROX:
        return _ZH_APPROX[span]
    try:
        value = cn2an.cn2an(span, "smart")
    except (ValueError, KeyError, IndexError, TypeError):
        return span
    return _number_text(float(value))


def _zh_half(match: re.Match) -> str:
    whole = match.group(1)
    return _number_text((float(whole) if whole else 0.0) + 0.5)


def _number_text(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


# --- English number words -------------------------------------------------------------------
_EN_ONE = re.compile(r"\b(?:a|an|one)\s+(?=(?:full\s+)?(?:week|month|year|day|hour|minute)s?\b)")
_EN_HALF = re.compile(r"\bhalf\s+an?\s+(month|year|hour|day)\b")
_EN_HALF_UNITS = {"month": "15 days", "year": "6 months", "hour": "30 minutes", "day": "12 hours"}
_EN_WORD = re.compile(r"\b(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
                      r"thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|"
                      r"thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand)\b")


def digits_for_words(text: str) -> str:
    """`text` (normalised) with its spelled numbers as digits, both languages."""
    if re.search(f"[{_ZH_DIGITS}]", text):
        text = _ZH_NUMERAL.sub(_zh_numeral, text)
    if "半" in text:
        text = _ZH_HALF.sub(_zh_half, text)
    if "half" in text:
        text = _EN_HALF.sub(lambda m: _EN_HALF_UNITS[m.group(1)], text)
    text = _EN_ONE.sub("1 ", text)
    if _EN_WORD.search(text):
        text = alpha2digit(text, "en", threshold=0)
    return text


# --- Units ----------------------------------------------------------------------------------
_MINUTES = {"minute": 1, "hour": 60, "day": 1440, "week": 10080, "month": 43200,
            "year": 518400}
_DURATION_UNITS = [
    (r"分钟|minutes?|mins?\b", "minute"), (r"个?小时|个?钟头|hours?|hrs?\b|h\b", "hour"),
    (r"个?工作日|个?自然日|天|日|(?:business|working|calendar)\s+days?|days?", "day"),
    (r"个?星期|个?礼拜|周|weeks?", "week"), (r"个月|months?", "month"), (r"年|years?", "year"),
]
_CURRENCY_BEFORE = [(r"hk\$|hkd\s*|港币\s*", "HKD"), (r"us\$|usd\s*|\$", "USD"),
                    (r"€|eur\s*", "EUR"), (r"¥|rmb\s*|cny\s*", "CNY")]
_CURRENCY_AFTER = [(r"港币|港元|hkd|hong kong dollars?", "HKD"),
                   (r"美元|美金|usd|dollars?|bucks", "USD"), (r"欧元|eur|euros?", "EUR"),
                   (r"元|块钱|块|人民币|rmb|cny|yuan|kuai", "CNY")]
# Physical quantities: (pattern, class, factor to the class's base unit).
_QUANTITY_UNITS = [
    (r"mah|毫安时|毫安", "charge", 1), (r"kwh|千瓦时|度电", "energy", 1000), (r"wh", "energy", 1),
    (r"kg|公斤|千克", "mass", 1000), (r"斤", "mass", 500), (r"克|g\b|grams?", "mass", 1),
    (r"mm|毫米", "length", 1), (r"cm|厘米|公分", "length", 10), (r"km|公里|千米", "length", 1e6),
    (r"m\b|米|meters?|metres?", "length", 1000), (r"英寸|inch(?:es)?|寸|\"", "length", 25.4),
    (r"ml|毫升", "volume", 1), (r"l\b|升|litres?|liters?", "volume", 1000),
    (r"tb", "storage", 1e6), (r"gb", "storage", 1000), (r"mb", "storage", 1),
    (r"khz", "frequency", 1000), (r"hz|赫兹", "frequency", 1),
    (r"°c|℃|摄氏度|度", "temperature", 1), (r"°f|℉", "fahrenheit", 1),
    (r"w\b|瓦|watts?", "power", 1), (r"v\b|伏|volts?", "voltage", 1),
    (r"atm", "pressure", 1), (r"岁|years? old", "age", 1), (r"倍|times\b|x\b", "multiple", 1),
]
_COUNT_UNITS = (r"件|个|双|条|套|次|位|家|台|只|张|份|款|种|色|层|单|pieces?|pcs|items?|pairs?|"
                r"orders?|colou?rs?|styles?|units?")

_NUM = r"\d+(?:,\d{3})*(?:\.\d+)?"
_RANGE = r"\s*(?:-|–|~|～|到|至|to|and)\s*"
_UNIT_ALTERNATIVES = "|".join(
    [p for p, _ in _DURATION_UNITS] + [p for p, _ in _CURRENCY_AFTER]
    + [p for p, _, _ in _QUANTITY_UNITS] + [_COUNT_UNITS, r"%|percent|per\s*cent|折"])
_NUMBER_WITH_UNIT = re.compile(
    # The lookahead lets the scan skip every position that cannot start a number quickly.
    rf"(?=[\d$€¥]|hk\$|us\$|rmb|cny|usd|hkd|eur|港币)(?P<before>hk\$|us\$|\$|€|¥|rmb\s*|cny\s*|usd\s*|hkd\s*|eur\s*|港币\s*)?"
    rf"(?P<first>{_NUM})(?:\s*(?P<first_unit>{_UNIT_ALTERNATIVES}))?"
    rf"(?:(?P<range>{_RANGE})(?P<before2>hk\$|us\$|\$|€|¥)?(?P<second>{_NUM}))?"
    rf"\s*(?P<unit>{_UNIT_ALTERNATIVES})?")

_URL = re.compile(r"(?:https?://|www\.)[^\s,，。;；、)）]+|\b[a-z0-9-]+\.(?:com|cn|net|org|shop)"
                  r"(?:/[^\s,，。;；、)）]*)?")
_EMAIL = re.compile(r"[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}")
_PHONE = re.compile(r"(?=[+\d])(?<![0-9a-z.])(?:\+?\d{1,3}[\s-])?(?:\d[\s-]?){6,13}\d(?![0-9a-z.])")
_CODE = re.compile(r"(?=[a-z0-9])(?<![a-z0-9])(?=[a-z0-9-]*\d)(?=[a-z0-9-]*[a-z])[a-z0-9]+(?:-[a-z0-9]+)*"
                   r"(?![a-z0-9])")
_DIGIT = re.compile(r"\d")
_URL_HINT = re.compile(r"www\.|https?://|@|\.(?:com|cn|net|org|shop)\b")
_RANGE_ONLY = re.compile(r"\d{1,5}\s*[-–]\s*\d{1,5}")
_ORDINAL = re.compile(r"\d+(?:st|nd|rd|th)")
_MONTHS = {m: i + 1 for i, m in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split())}
_DATE_ISO = re.compile(r"(?=\d)(?:(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]|(?<!\d)(\d{1,2})\s*月)\s*"
                       r"(?:(\d{1,2})\s*[日号]?)?")
_DATE_EN = re.compile(
    r"\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+(\d{1,2})(?:st|nd|rd|th)?\b"
    r"|\b(\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
    r"[a-z]*\b")
_CLOCK = re.compile(
    r"(?=[上早中下晚傍凌\d])(?P<part>上午|早上|中午|下午|晚上|傍晚|凌晨)?(?P<h>\d{1,2})(?:[:：](?P<m>\d{2})|点(?:(?P<zm>\d{1,2})分?|(?P<half>半))?)"
    r"(?:\s*(?P<ampm>a\.?m\.?|p\.?m\.?))?|(?P<h2>\d{1,2})\s*(?P<ampm2>a\.?m\.?|p\.?m\.?)")
_WEEKDAY = re.compile(r"(?=[周星礼mtwfs])(?:周|星期|礼拜)([一二三四五六日天])|\b(monday|tuesday|wednesday|thursday|"
                      r"friday|saturday|sunday)\b")
_WEEKDAYS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "日": 7, "天": 7, "monday": 1,
             "tuesday": 2, "wednesday": 3, "thursday": 4, "friday": 5, "saturday": 6,
             "sunday": 7}


def _value(text: str) -> float:
    return float(text.replace(",", ""))


@lru_cache(maxsize=512)
def _unit_of(unit: str | None, before: str | None) -> tuple[str, float] | None:
    """(class, factor) of a unit found after a number, or of a currency found before it."""
    if before:
        for pattern, currency in _CURRENCY_BEFORE:
            if re.fullmatch(pattern, before):
                return f"money:{currency}", 1
    if not unit:
        return None
    unit = unit.strip()
    if unit in ("%", "percent") or re.fullmatch(r"per\s*cent", unit):
        return "percent", 1
    if unit == "折":
        return "discount", 1
    for pattern, name in _DURATION_UNITS:
        if re.fullmatch(pattern, unit):
            return "duration", _MINUTES[name]
    for pattern, currency in _CURRENCY_AFTER:
        if re.fullmatch(pattern, unit):
            return f"money:{currency}", 1
    for pattern, kind, factor in _QUANTITY_UNITS:
        if re.fullmatch(pattern, unit):
            return kind, factor
    if re.fullmatch(_COUNT_UNITS, unit):
        return "count", 1
    return None


def _scaled(kind: str, factor: float, value: float) -> float:
    if kind == "discount":  # 8折 = 20 % off; 8.5折 = 15 % off
        return round(100 - value * 10, 3) if value < 10 else round(100 - value, 3)
    return round(value * factor, 3)


def _as_percent(kind: str) -> str:
    return "percent" if kind == "discount" else kind


def extract_claims(text: str) -> list[Claim]:
    """The number-bearing claims of `text`, in order (see the module doc)."""
    return list(_claims(normalize(text)))


def _claims(normalized: str) -> tuple[Claim, ...]:
    text = digits_for_words(normalized)
    if not _DIGIT.search(text) and not _URL_HINT.search(text):
        # Most sentences: no number, no address; only a weekday can be a claim.
        return tuple(Claim("weekday", frozenset([_WEEKDAYS[m.group(1) or m.group(2)]]),
                           m.group(0), m.start(), m.end()) for m in _WEEKDAY.finditer(text))
    found: list[Claim] = []
    taken = bytearray(len(text))

    def add(kind: str, values, start: int, end: int) -> None:
        found.append(Claim(kind, frozenset(values), text[start:end].strip(), start, end))
        taken[start:end] = b"\x01" * (end - start)

    def free(start: int, end: int) -> bool:
        return not any(taken[start:end])

    for pattern in (_URL, _EMAIL) if "." in text else ():
        for m in pattern.finditer(text):
            add("code", [m.group(0).rstrip(".,")], m.start(), m.end())
    for m in _DATE_ISO.finditer(text):
        if m.group(1) and not m.group(4):
            continue  # "2026-12" alone
        month, day = int(m.group(2) or m.group(3)), int(m.group(4) or 0)
        if 1 <= month <= 12 and 0 <= day <= 31 and free(m.start(), m.end()):
            add("date", [(month, day)], m.start(), m.end())
    for m in _DATE_EN.finditer(text):
        month = _MONTHS[(m.group(1) or m.group(4))[:3]]
        day = int(m.group(2) or m.group(3))
        if free(m.start(), m.end()):
            add("date", [(month, day)], m.start(), m.end())
    for m in _CLOCK.finditer(text):
        if not free(m.start(), m.end()):
            continue
        hour = int(m.group("h") or m.group("h2"))
        minute = int(m.group("m") or m.group("zm") or 0) + (30 if m.group("half") else 0)
        ampm = (m.group("ampm") or m.group("ampm2") or "").replace(".", "")
        part = m.group("part") or ""
        if m.group("h") and not (m.group("m") or "点" in m.group(0)):
            continue
        if hour > 24 or minute > 59:
            continue
        if ampm == "pm" or part in ("下午", "晚上", "傍晚") or (part == "中午" and hour < 3):
            hours = [hour + 12 if hour < 12 else hour]
        elif ampm == "am" or part in ("上午", "早上", "凌晨"):
            hours = [hour % 12]
        else:
            hours = [hour, hour + 12] if hour < 12 else [hour]
        add("clock", [h * 60 + minute for h in hours], m.start(), m.end())
    for m in _WEEKDAY.finditer(text):
        if free(m.start(), m.end()):
            add("weekday", [_WEEKDAYS[m.group(1) or m.group(2)]], m.start(), m.end())
    for m in _PHONE.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        if len(digits) >= 7 and free(m.start(), m.end()) and not _RANGE_ONLY.fullmatch(
                m.group(0).strip()):
            add("code", [digits], m.start(), m.end())
    for m in _NUMBER_WITH_UNIT.finditer(text):
        if not m.group("first") or not free(m.start("first"), m.end("first")):
            continue
        # A number glued to letters is part of a code ("ip67", "maple15"), handled below.
        if m.start("first") > 0 and text[m.start("first") - 1].isalpha() and \
                text[m.start("first") - 1].isascii() and not m.group("before"):
            continue
        unit = _unit_of(m.group("unit"), m.group("before") or m.group("before2"))
        first_unit = _unit_of(m.group("first_unit"), m.group("before"))
        firsts = [(m.group("first"), first_unit or unit, m.start("first"))]
        if m.group("second") is not None:
            if re.fullmatch(r"\s*and\s*", m.group("range") or "") and unit is None:
                firsts.append((m.group("second"), None, m.start("second")))
            else:
                firsts.append((m.group("second"), unit, m.start("second")))
        elif first_unit is not None:
            unit = first_unit
        ends: list[tuple[str, float]] = []
        for number, unit_class, _ in firsts:
            value = _value(number)
            if unit_class is None:
                if value < 10 or (len(number) == 4 and 1990 <= value <= 2100):
                    continue
                ends.append(("number", value))
                continue
            kind, factor = unit_class
            if kind == "count" and value < 2:
                continue
            if kind == "duration" and factor == _MINUTES["year"] and value >= 1900:
                continue  # 2026年: a year, not a duration
            ends.append((_as_percent(kind), _scaled(kind, factor, value)))
        if len(ends) == 2 and ends[0][0] == ends[1][0] and ends[0][1] < ends[1][1]:
            # A range is one claim: "2-3 days" is not supported by facts of "1-3 days" and
            # "2-4 days", though each end is. Its ends alone are in a fact's sheet (facts.py).
            add("range", [(ends[0][0], ends[0][1], ends[1][1])], m.start(), m.end())
            continue
        for kind, value in ends:
            add(kind, [value], m.start(), m.end())
    for m in _CODE.finditer(text):
        if not free(m.start(), m.end()):
            continue
        if _ORDINAL.fullmatch(m.group(0)):  # "the 6th day": a number, "the 1st order": not
            value = float(re.match(r"\d+", m.group(0)).group(0))
            if value >= 2:
                add("number", [value], m.start(), m.end())
            continue
        add("code", [m.group(0)], m.start(), m.end())
    found.sort(key=lambda c: c.start)
    return tuple(found)
