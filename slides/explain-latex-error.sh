#!/bin/sh
# Print the first LaTeX error from a pdflatex log, with a hint for the
# failures seen most often when editing slides.md.
log="$1"
echo "slides: pdflatex failed. First error in $log:" >&2
grep -m 1 -A 3 -E '^(!|[^ ]+:[0-9]+: )' "$log" >&2
if grep -q 'Unicode character' "$log"; then
  echo "slides: pdflatex cannot typeset that Unicode character." \
       "Write it as plain ASCII or LaTeX math in slides.md." >&2
elif grep -q 'Missing character' "$log"; then
  echo "slides: the font has no glyph for that character." \
       "Write it as plain ASCII or LaTeX math in slides.md." >&2
elif grep -q "\.sty' not found" "$log"; then
  echo "slides: a LaTeX package is not installed. Install the Debian" \
       "package that provides it and add that package to apt-packages.txt." >&2
elif grep -q "File .* not found" "$log"; then
  echo "slides: a file that the deck includes is missing." \
       "Run 'make figures' or fix the path." >&2
fi
exit 1
