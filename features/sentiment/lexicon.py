"""Word lists for the lexical markers of the sentiment stream, with their sources.

Three English word categories that the depression-language literature measures as the
*fraction of words* a speaker uses from the category. Matching is on whole, lower-cased tokens
(see :func:`tokenize`); there is no stemming, so each list spells out its inflected forms.

First-person singular pronouns (:data:`FIRST_PERSON_SINGULAR`)
    *I, me, my, mine, myself* and the contractions of *I* (*I'm, I've, I'll, I'd*), as in
    LIWC's ``i`` category. Higher use is associated with depression: meta-analytic r ≈ 0.13
    (Edwards & Holtzman, 2017) and r ≈ 0.10 across 4,754 people in a multi-lab study
    (Tackman et al., 2019). Small effects: a marker for groups, not a diagnosis.
Absolutist words (:data:`ABSOLUTIST`)
    The 19-word absolutist dictionary of Al-Mosaiwi & Johnstone (2018), whose use was
    elevated in anxiety, depression and suicidal-ideation forums (and more specific to them
    than negative-emotion words).
Negative-emotion words (:data:`NEGATIVE_EMOTION`)
    A small open list written for vocalfusion (anxiety, anger and sadness words). It
    *approximates* LIWC's ``negemo`` category (Pennebaker et al., 2015), which is proprietary
    and not reproduced here; depressed students used more LIWC negative-emotion words in
    essays (Rude, Gortner & Pennebaker, 2004). The list is not validated against LIWC:
    rates from it are comparable with each other, not with published LIWC percentages. As an
    independent check, the test suite requires that no word in it has a positive valence in
    the open VADER lexicon (Hutto & Gilbert, 2014) and that at least 90 % have a negative one.

References
----------
Edwards, T., & Holtzman, N. S. (2017). A meta-analysis of correlations between depression
and first person singular pronoun use. *Journal of Research in Personality, 68*, 63–68.
https://doi.org/10.1016/j.jrp.2017.02.005

Tackman, A. M., Sbarra, D. A., Carey, A. L., Donnellan, M. B., Horn, A. B., Holtzman, N. S.,
Edwards, T. S., Pennebaker, J. W., & Mehl, M. R. (2019). Depression, negative emotionality,
and self-referential language: A multi-lab, multi-measure, and multi-language-task research
synthesis. *Journal of Personality and Social Psychology, 116*(5), 817–834.
https://doi.org/10.1037/pspp0000187

Al-Mosaiwi, M., & Johnstone, T. (2018). In an absolute state: Elevated use of absolutist
words is a marker specific to anxiety, depression, and suicidal ideation. *Clinical
Psychological Science, 6*(4), 529–542. https://doi.org/10.1177/2167702617747074

Rude, S. S., Gortner, E.-M., & Pennebaker, J. W. (2004). Language use of depressed and
depression-vulnerable college students. *Cognition and Emotion, 18*(8), 1121–1133.
https://doi.org/10.1080/02699930441000030

Pennebaker, J. W., Boyd, R. L., Jordan, K., & Blackburn, K. (2015). *The development and
psychometric properties of LIWC2015*. University of Texas at Austin.

Hutto, C. J., & Gilbert, E. (2014). VADER: A parsimonious rule-based model for sentiment
analysis of social media text. *Proceedings of ICWSM 2014*.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "FIRST_PERSON_SINGULAR",
    "ABSOLUTIST",
    "NEGATIVE_EMOTION",
    "CATEGORIES",
    "LexicalCounts",
    "tokenize",
    "count_categories",
]

#: LIWC-style ``i`` category: I, me, my, mine, myself and the contractions of "I"
FIRST_PERSON_SINGULAR: frozenset[str] = frozenset({
    "i", "me", "my", "mine", "myself", "i'm", "i've", "i'll", "i'd",
})

#: Al-Mosaiwi & Johnstone (2018), absolutist dictionary (19 words)
ABSOLUTIST: frozenset[str] = frozenset({
    "absolutely", "all", "always", "complete", "completely", "constant", "constantly",
    "definitely", "entire", "ever", "every", "everyone", "everything", "full", "must", "never",
    "nothing", "totally", "whole",
})

_ANXIETY = """
afraid anxious anxiety apprehensive fear feared fearful fears frightened frightening horrified
insecure nervous nervousness panic panicked panicky scared scary terrified terror threatened
uneasy worried worries worry worrying tense tension stressed stressful dread
distressed distress desperate helpless vulnerable confused doubt doubtful doubts troubled
upset
"""
_ANGER = """
anger angry annoyed annoying annoy irritated irritating irritable furious fury mad rage enraged
hate hated hateful hates hating hostile frustrated frustrating frustration resent resentful
outraged offended bitter disgusted disgusting disgust despise jealous cruel
"""
_SADNESS = """
sad sadness sadly sorrow sorrowful unhappy depressed depression depressing miserable misery
grief grieving grieve cry crying cried tears hurt hurting hurts lonely loneliness alone
hopeless hopelessness despair heartbroken gloomy empty worthless useless failure failed fail
guilty guilt ashamed shame regret regrets pain painful suffer suffering suffered disappointed
disappointing disappointment devastated crushed awful terrible horrible bad worse worst
abandoned rejected
"""

#: vocalfusion's open negative-emotion list (anxiety, anger, sadness); approximates LIWC negemo
NEGATIVE_EMOTION: frozenset[str] = frozenset((_ANXIETY + _ANGER + _SADNESS).split())

#: category name → word set, in the order the rates are reported
CATEGORIES: dict[str, frozenset[str]] = {
    "first_person_singular": FIRST_PERSON_SINGULAR,
    "absolutist": ABSOLUTIST,
    "negative_emotion": NEGATIVE_EMOTION,
}

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens of ``text``: letters/digits with internal apostrophes.

    Punctuation is dropped; typographic apostrophes are normalised, so "I’m" → ``"i'm"``.

    Examples
    --------
    >>> tokenize("I'm sure, Mr. Smith — it’s ALL done!")
    ["i'm", 'sure', 'mr', 'smith', "it's", 'all', 'done']
    """
    return _TOKEN.findall(text.translate(_APOSTROPHES).lower())


class LexicalCounts(BaseModel):
    """Category counts and rates of one text.

    Rates are ``count / word_count`` (fraction of words, 0–1); ``None`` when there are no
    words, never a fake 0.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    word_count: int = Field(ge=0)
    first_person_singular_count: int = Field(0, ge=0)
    absolutist_count: int = Field(0, ge=0)
    negative_emotion_word_count: int = Field(0, ge=0)

    def _rate(self, n: int) -> float | None:
        return n / self.word_count if self.word_count else None

    @property
    def first_person_singular_rate(self) -> float | None:
        return self._rate(self.first_person_singular_count)

    @property
    def absolutist_rate(self) -> float | None:
        return self._rate(self.absolutist_count)

    @property
    def negative_emotion_word_rate(self) -> float | None:
        return self._rate(self.negative_emotion_word_count)


def count_categories(tokens: Iterable[str]) -> LexicalCounts:
    """Count the tokens of each category (tokens as :func:`tokenize` returns them).

    Examples
    --------
    >>> c = count_categories(tokenize("I always feel so alone, I never sleep"))
    >>> c.word_count, c.first_person_singular_count, c.absolutist_count
    (8, 2, 2)
    >>> c.negative_emotion_word_count, round(c.first_person_singular_rate, 3)
    (1, 0.25)
    """
    toks = list(tokens)
    return LexicalCounts(
        word_count=len(toks),
        first_person_singular_count=sum(t in FIRST_PERSON_SINGULAR for t in toks),
        absolutist_count=sum(t in ABSOLUTIST for t in toks),
        negative_emotion_word_count=sum(t in NEGATIVE_EMOTION for t in toks),
    )
