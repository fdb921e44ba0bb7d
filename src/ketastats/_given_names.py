"""Common given names, the evidence the identifier guard needs to call ``ann lee`` a name.

Capitalised two-word values ("Ann Lee") have the shape of a name; lower- or upper-case ones
("ann lee", "JOHN SMITH") have the shape of any two-word phrase ("common cold", "not ill").
The guard calls such a value a name when one of its words is a common given name from this
list. The list is deliberately short and leaves out given names that are also common words
("may", "june", "mark", "will", "rose", "grace", "frank", "max", ...), so that it does not
fire on categories or free-form levels; it is a safety net, not a dictionary of all names.
"""

from __future__ import annotations

__all__ = ["GIVEN_NAMES"]

#: Lower-case given names (English, Spanish, Portuguese, French, German, Italian, Dutch,
#: Nordic, Slavic, Arabic, Turkish and others), none of them an English word.
GIVEN_NAMES: frozenset[str] = frozenset("""
aaron abdul abigail adam adrian ahmed aisha alan albert alejandro alessandro alex alexander
alexandra alexis alice alicia alison amanda amelia amy ana andrea andreas andrew angela anna
ann anne annette anthony antonio ashley barbara benjamin bernard beth betty brandon brian
bridget carl carla carlos carmen caroline carol catherine charles charlotte chloe
christian christina christine christopher claire claudia cynthia daniel daniela david
deborah denise diana diego dimitri donald dorothy edward elena elizabeth ellen emily emma
eric erik ethan eva fatima felix fernando fiona francesca francesco francisco franz
gabriel gabriela george gerhard giovanni giulia giuseppe gregory hannah hans heather
heinrich helen helena henrik ibrahim igor ingrid irene isabel isabella ivan jacob james
jan jana jane janet jason javier jean jennifer jenny jessica joan joanna johan johann john
jonathan jorge jose joseph joshua juan julia julian julie jurgen justin karen karin karl
katarina kate katherine kathleen katrin kelly kenneth kevin kimberly klaus lars laura
lauren leonardo linda lisa lorenzo louis louise lucas lucia luis lukas luca magdalena
manuel marco margaret maria marie marina mario martha martin mary matteo matthew matthias
megan melissa michael michelle miguel mohamed mohammed monica nancy natalia natalie nathan
nicholas nicole nikolai nina noah oliver olga omar pablo patricia patrick paul paula
pedro peter philip pierre rachel rafael rebecca richard robert roberto ronald ruth ryan
samantha samuel sandra sara sarah sean sebastian sergei sharon simon sofia sophia sophie
stefan stefanie stephanie stephen steven susan svetlana teresa thomas timothy tobias
tomas valentina vanessa victoria vincent walter wilhelm william yusuf zoe
ann-marie jo-ann lee-ann leeann joann annmarie
""".split())
