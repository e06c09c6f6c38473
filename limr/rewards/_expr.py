"""A small, safe evaluator for the LaTeX of final answers: the fast path of answer checking.

It parses a normalised answer (``3\\sqrt{13}``, ``\\frac{-1}{3}``, ``2(k+1)``, ``6-5i``) into a tree
with a hand-written recursive-descent parser -- nothing is ever passed to ``eval``, ``sympify`` or
``parse_expr`` -- and evaluates the tree

* exactly (``fractions.Fraction``) while only rational arithmetic is involved, with caps on the
  size of every intermediate number, so ``9^{9^{9^9}}`` or ``10000!`` raise :class:`TooBig`
  instead of hanging;
* otherwise as complex floats at a few fixed generic points for the free variables, so that two
  expressions that agree at every point are the same function (the Schwartz-Zippel argument for
  polynomials and rational functions).

Anything the grammar does not cover with certainty (relations, subscripts, ``\\log`` without a
base, ``1/2x``, ``\\sin 2x``) raises :class:`Unsupported` and is left to the symbolic stage.
Only the standard library is imported: this module also runs inside the checker's workers.
"""

from __future__ import annotations

import cmath
import math
import re
import time
from dataclasses import dataclass
from fractions import Fraction

Value = Fraction | complex

MAX_BITS = 20_000
"""Largest exact intermediate (numerator or denominator), in bits (~6,000 digits): one operation
on numbers this size (a product, a gcd) takes well under a millisecond, so the deadline checked
between operations holds."""
MAX_NUMBER_DIGITS = 400
"""Longest numeric literal accepted (Python refuses int() of very long strings anyway)."""
MAX_TOKENS = 400


class Unsupported(Exception):
    """The expression uses something the fast path does not decide; try the symbolic stage."""


class TooBig(Exception):
    """The expression's value is too large to compute in the time budget (a power tower...)."""


class OutOfTime(TooBig):
    """The deadline passed during evaluation."""


_TOKEN = re.compile(
    r"(?P<num>\d+(?:\.\d*)?|\.\d+)|(?P<cmd>\\[A-Za-z]+|\\[{}|])|(?P<sym>[A-Za-z])"
    r"|(?P<op>[-+*/^!(){}\[\]|,=<>_&':;])|(?P<ws>\s+)"
)

# Commands that are variables (Greek letters); ``\pi`` is the constant.
_GREEK = frozenset(
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu "
    "xi rho sigma tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Sigma Phi Psi "
    "Omega".split()
)
_FUNCS = {
    "sin": cmath.sin,
    "cos": cmath.cos,
    "tan": cmath.tan,
    "cot": lambda z: 1 / cmath.tan(z),
    "sec": lambda z: 1 / cmath.cos(z),
    "csc": lambda z: 1 / cmath.sin(z),
    "arcsin": cmath.asin,
    "arccos": cmath.acos,
    "arctan": cmath.atan,
    "sinh": cmath.sinh,
    "cosh": cmath.cosh,
    "tanh": cmath.tanh,
    "ln": cmath.log,
    "exp": cmath.exp,
}
_TIMES = frozenset({"*", "\\cdot", "\\times"})
_DIVIDE = frozenset({"/", "\\div"})


@dataclass(frozen=True)
class Expr:
    """A parsed expression: its tree, its free variables and whether it has a decimal literal."""

    tree: tuple
    variables: frozenset[str]
    has_decimal: bool


# ---------------------------------------------------------------------------------------------
# Parsing


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise Unsupported(f"character {text[pos]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind == "ws":
            continue
        tokens.append((kind, m.group()))  # type: ignore[arg-type]
        if len(tokens) > MAX_TOKENS:
            raise Unsupported("too long")
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0
        self.variables: set[str] = set()
        self.has_decimal = False

    # -- helpers
    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise Unsupported("unexpected end")
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        tok = self.take()
        if tok[1] != value:
            raise Unsupported(f"expected {value!r}, got {tok[1]!r}")

    def starts_atom(self) -> bool:
        tok = self.peek()
        if tok is None:
            return False
        kind, value = tok
        if kind in ("num", "sym"):
            return True
        if kind == "op":
            return value in "({"
        return (
            value in ("\\frac", "\\sqrt", "\\pi", "\\binom")
            or value[1:] in _FUNCS
            or (value[1:] in _GREEK)
        )

    def starts_function(self) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "cmd" and tok[1][1:] in _FUNCS

    # -- grammar
    def parse(self) -> tuple:
        tree = self.expr()
        if self.peek() is not None:
            raise Unsupported(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return tree

    def expr(self) -> tuple:
        tok = self.peek()
        sign = None
        if tok is not None and tok[1] in "+-" and tok[0] == "op":
            sign = self.take()[1]
        tree = self.term()
        if sign == "-":
            tree = ("neg", tree)
        while (tok := self.peek()) is not None and tok[0] == "op" and tok[1] in "+-":
            self.take()
            right = self.term()
            tree = ("add", tree, right) if tok[1] == "+" else ("sub", tree, right)
        return tree

    def term(self) -> tuple:
        tree = self.signed_power()
        after_divide = False
        while True:
            tok = self.peek()
            if tok is None:
                break
            if tok[1] in _TIMES:
                self.take()
                tree = ("mul", tree, self.signed_power())
                after_divide = False
            elif tok[1] in _DIVIDE:
                self.take()
                tree = ("div", tree, self.signed_power())
                after_divide = True
            elif self.starts_atom():
                if after_divide:  # 1/2x: (1/2)x or 1/(2x)? Writers disagree; don't guess.
                    raise Unsupported("implicit product after a division")
                tree = ("mul", tree, self.power())
            else:
                break
        return tree

    def signed_power(self) -> tuple:
        tok = self.peek()
        if tok is not None and tok[0] == "op" and tok[1] in "+-":
            self.take()
            inner = self.signed_power()
            return ("neg", inner) if tok[1] == "-" else inner
        return self.power()

    def power(self) -> tuple:
        base = self.postfix()
        tok = self.peek()
        if tok is not None and tok[1] == "^":
            self.take()
            exponent = self.exponent()
            base = ("pow", base, exponent)
            if (tok := self.peek()) is not None and tok[1] in ("^", "!"):
                raise Unsupported("ambiguous exponent")
        return base

    def exponent(self) -> tuple:
        tok = self.peek()
        if tok is None:
            raise Unsupported("missing exponent")
        if tok[1] == "{":
            return self.group("{", "}")
        if tok[1] in "+-":
            self.take()
            inner = self.exponent()
            return ("neg", inner) if tok[1] == "-" else inner
        if tok[0] == "num":
            if len(tok[1]) > 1:  # x^23 is x^2 * 3 in LaTeX; nobody means that
                raise Unsupported("multi-digit exponent without braces")
            return self.atom()
        return self.atom()

    def postfix(self) -> tuple:
        tree = self.atom()
        while (tok := self.peek()) is not None and tok[1] == "!":
            self.take()
            tree = ("fact", tree)
        return tree

    def group(self, open_: str, close: str) -> tuple:
        self.expect(open_)
        tree = self.expr()
        self.expect(close)
        return tree

    def atom(self) -> tuple:
        kind, value = self.take()
        if kind == "num":
            if len(value) > MAX_NUMBER_DIGITS:
                raise TooBig("numeric literal too long")
            if "." in value:
                self.has_decimal = True
            return ("num", Fraction(value if value != "." else "0"))
        if kind == "sym":
            if value == "i":
                return ("const", "i")
            if value == "e":
                return ("const", "e")
            self.variables.add(value)
            return ("var", value)
        if value == "(":
            self.i -= 1
            return self.group("(", ")")
        if value == "{":
            self.i -= 1
            return self.group("{", "}")
        if kind != "cmd":
            raise Unsupported(f"unexpected {value!r}")
        name = value[1:]
        if name == "pi":
            return ("const", "pi")
        if name in _GREEK:
            self.variables.add(value)
            return ("var", value)
        if name == "frac":
            top = self.group("{", "}")
            bottom = self.group("{", "}")
            return ("div", top, bottom)
        if name == "binom":
            top = self.group("{", "}")
            bottom = self.group("{", "}")
            return ("binom", top, bottom)
        if name == "sqrt":
            index: tuple = ("num", Fraction(2))
            if (tok := self.peek()) is not None and tok[1] == "[":
                index = self.group("[", "]")
            return ("root", self.group("{", "}"), index)
        if name == "log":  # only with a base: \log 8 is log10 to some, ln to others
            if (tok := self.peek()) is None or tok[1] != "_":
                raise Unsupported("\\log without a base")
            self.take()
            base = self.exponent()
            tok = self.peek()
            if tok is not None and tok[1] in "({":
                arg = self.group(tok[1], ")" if tok[1] == "(" else "}")
            else:
                arg = self.postfix()
                while self.starts_atom() and not self.starts_function():
                    arg = ("mul", arg, self.postfix())
            return ("div", ("func", "ln", arg), ("func", "ln", base))
        if name in _FUNCS:
            power = None
            tok = self.peek()
            if tok is not None and tok[1] == "^":  # \sin^2 x = (\sin x)^2; \sin^{-1} is arcsin
                self.take()
                power = self.exponent()
                if power[0] != "num" or power[1] < 1:
                    raise Unsupported("power of a function")
                tok = self.peek()
            if tok is not None and tok[1] in "({":
                arg = self.group(tok[1], ")" if tok[1] == "(" else "}")
            else:
                # \sin 3x is sin(3x): the argument runs over the following product of atoms,
                # up to an operator or the next function (\sin 5x \cos x)
                arg = self.postfix()
                while self.starts_atom() and not self.starts_function():
                    arg = ("mul", arg, self.postfix())
            tree = ("func", name, arg)
            return ("pow", tree, power) if power is not None else tree
        raise Unsupported(f"command {value}")


def parse(text: str) -> Expr:
    """Parse a normalised answer. Raises :class:`Unsupported` or :class:`TooBig`."""
    parser = _Parser(text)
    if not parser.tokens:
        raise Unsupported("empty")
    tree = parser.parse()
    return Expr(tree, frozenset(parser.variables), parser.has_decimal)


# ---------------------------------------------------------------------------------------------
# Evaluation


def _check_size(x: Fraction) -> Fraction:
    if x.numerator.bit_length() > MAX_BITS or x.denominator.bit_length() > MAX_BITS:
        raise TooBig("intermediate value too large")
    return x


def _as_complex(x: Value) -> complex:
    if isinstance(x, Fraction):
        try:
            return complex(float(x))
        except OverflowError:
            raise TooBig("value too large for floating point") from None
    return x


def _exact_root(x: Fraction, n: int) -> Fraction | None:
    """The exact n-th root of a non-negative rational, or None."""
    if n <= 0 or x < 0:
        return None

    def iroot(k: int) -> int | None:
        if k.bit_length() > MAX_BITS:
            return None
        r = _int_root(k, n)
        for c in (r - 1, r, r + 1):
            if c >= 0 and c**n == k:
                return c
        return None

    top, bottom = iroot(x.numerator), iroot(x.denominator)
    if top is None or bottom is None:
        return None
    return Fraction(top, bottom)


def _int_root(k: int, n: int) -> int:
    """The integer part of the n-th root of ``k >= 0`` (Newton's method: O(log bits) steps)."""
    if k < 2:
        return k
    if n == 2:
        return math.isqrt(k)
    x = 1 << -(-k.bit_length() // n)  # an upper bound
    while True:
        y = ((n - 1) * x + k // x ** (n - 1)) // n
        if y >= x:
            return x
        x = y


def _pow(base: Value, exponent: Value) -> Value:
    if isinstance(base, Fraction) and isinstance(exponent, Fraction):
        if exponent.denominator == 1:
            e = exponent.numerator
            if base in (0, 1, -1):
                if base == 0 and e < 0:
                    raise ZeroDivisionError("0 to a negative power")
                return base**e
            bits = max(base.numerator.bit_length(), base.denominator.bit_length())
            if abs(e) * bits > MAX_BITS:
                raise TooBig("power too large")
            return _check_size(base**e)
        # rational exponent p/q: exact when the root is exact; odd roots of negatives are real
        q, p = exponent.denominator, exponent.numerator
        if q <= 64 and abs(p) <= 10_000 and not (base < 0 and q % 2 == 0):
            negative = base < 0
            magnitude = -base if negative else base
            root = _exact_root(magnitude, q)
            if root is not None:
                return _pow(-root if negative else root, Fraction(p))
            real_root = _as_complex(magnitude).real ** (1.0 / q)
            return _pow(complex(-real_root if negative else real_root), Fraction(p))
    b, x = _as_complex(base), _as_complex(exponent)
    if abs(x) > 1e4 and abs(b) > 1:
        raise TooBig("power too large")
    try:
        return b**x
    except OverflowError:
        raise TooBig("power too large") from None


def _log2_factorial(n: int) -> float:
    return math.lgamma(n + 1) / math.log(2)


class _Evaluator:
    """Evaluates one tree; checks the deadline before every operation (each one is bounded by
    :data:`MAX_BITS`, so the deadline holds to within a millisecond or so)."""

    def __init__(self, env: dict[str, Value], deadline: float | None) -> None:
        self.env = env
        self.deadline = deadline

    def __call__(self, tree: tuple) -> Value:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise OutOfTime("deadline passed")
        op = tree[0]
        if op == "num":
            return tree[1]
        if op == "var":
            return self.env[tree[1]]
        if op == "const":
            return {"pi": complex(math.pi), "e": complex(math.e), "i": 1j}[tree[1]]
        if op == "neg":
            return -self(tree[1])
        if op in ("add", "sub", "mul", "div"):
            a, b = self(tree[1]), self(tree[2])
            if isinstance(a, Fraction) and isinstance(b, Fraction):
                if op == "add":
                    return _check_size(a + b)
                if op == "sub":
                    return _check_size(a - b)
                if op == "mul":
                    return _check_size(a * b)
                return _check_size(a / b)  # ZeroDivisionError propagates
            a, b = _as_complex(a), _as_complex(b)
            if op == "add":
                return a + b
            if op == "sub":
                return a - b
            if op == "mul":
                return a * b
            return a / b
        if op == "pow":
            return _pow(self(tree[1]), self(tree[2]))
        if op == "root":
            index = self(tree[2])
            if not isinstance(index, Fraction) or index.denominator != 1 or index.numerator < 2:
                raise Unsupported("root index")
            return _pow(self(tree[1]), Fraction(1, index.numerator))
        if op == "fact":
            n = self(tree[1])
            if not isinstance(n, Fraction) or n.denominator != 1 or n < 0:
                raise Unsupported("factorial of a non-integer")
            if _log2_factorial(int(n)) > MAX_BITS:
                raise TooBig("factorial too large")
            return Fraction(math.factorial(int(n)))
        if op == "binom":
            n, k = self(tree[1]), self(tree[2])
            if not all(isinstance(v, Fraction) and v.denominator == 1 for v in (n, k)):
                raise Unsupported("binomial of non-integers")
            if not 0 <= k <= n:
                return Fraction(0)
            n, k = int(n), int(k)
            if n > 1 << 40:
                raise TooBig("binomial too large")
            bits = _log2_factorial(n) - _log2_factorial(k) - _log2_factorial(n - k)
            if bits > MAX_BITS:
                raise TooBig("binomial too large")
            return Fraction(math.comb(n, k))
        if op == "func":
            arg = _as_complex(self(tree[2]))
            try:
                return _FUNCS[tree[1]](arg)
            except OverflowError:
                raise TooBig("function value too large") from None
        raise Unsupported(op)


# Generic points for the free variables: not integers, not simple fractions, all distinct.
_POINTS = (0.6180339887, 1.4142135624, 2.2360679775, 0.3819660113, 1.7320508076)


def point_values(count: int, n_variables: int) -> list[list[float]]:
    """Deterministic generic values: ``count`` points of ``n_variables`` coordinates each.

    The second point is negative in every coordinate, so that ``\\sqrt{x^2}`` is not ``x``.
    """
    return [
        [
            (-1 if k == 1 else 1) * (_POINTS[(k + j) % len(_POINTS)] * (1 + 0.173 * j) + 0.091 * k)
            for j in range(n_variables)
        ]
        for k in range(count)
    ]


def points(variables: frozenset[str], count: int = 3) -> list[dict[str, Value]]:
    """Deterministic evaluation points for the given variables (the same for pred and gold).

    The coordinates are exact rationals (the values of :func:`point_values` to 10 decimals), so
    that rational functions with rational coefficients evaluate exactly: two of them that differ
    at a point are certainly different, and agree at every point only if they are the same
    function or the points are roots of their difference (Schwartz-Zippel).
    """
    names = sorted(variables)
    return [
        {name: Fraction(round(v * 10**10), 10**10) for name, v in zip(names, values)}
        for values in point_values(count, len(names))
    ]


def evaluate(expr: Expr, env: dict[str, Value], deadline: float | None = None) -> Value:
    """The value of ``expr`` at ``env`` (exact Fraction when possible). May raise TooBig,
    OutOfTime (``time.monotonic()`` passed ``deadline``), Unsupported, ZeroDivisionError or
    ValueError (outside a function's domain)."""
    value = _Evaluator(env, deadline)(expr.tree)
    if isinstance(value, complex) and not (math.isfinite(value.real) and math.isfinite(value.imag)):
        raise TooBig("not a finite number")
    return value
