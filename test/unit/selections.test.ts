// Several selections in one editor (src/shared/selections.ts): the line labels, the note a
// one-selection command gives, and the pair Compare Prompts offers.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { linesLabel, multiSelectionNote, nonEmptySpans, selectionPair, type Span } from '../../src/shared/selections';

const span = (l0: number, c0: number, l1: number, c1: number): Span => ({
  start: { line: l0, character: c0 },
  end: { line: l1, character: c1 },
});

describe('selections', () => {
  test('lines are 1-based; a selection ending at a line start does not count that line', () => {
    assert.equal(linesLabel(span(0, 0, 0, 12)), 'line 1');
    assert.equal(linesLabel(span(2, 4, 4, 1)), 'lines 3–5');
    assert.equal(linesLabel(span(2, 0, 3, 0)), 'line 3', 'one whole line taken with Shift+Down');
    assert.equal(linesLabel(span(2, 0, 5, 0)), 'lines 3–5');
    assert.equal(linesLabel(span(7, 3, 7, 3)), 'line 8', 'a cursor');
  });

  test('the non-empty selections, in document order (the order they were made does not matter)', () => {
    const a = span(5, 0, 5, 9);
    const cursor = span(1, 2, 1, 2);
    const b = span(1, 4, 2, 0);
    const c = span(5, 10, 5, 12);
    assert.deepEqual(nonEmptySpans([a, cursor, c, b]), [b, a, c]);
    assert.deepEqual(nonEmptySpans([cursor]), []);
  });

  test('a command that takes one selection says so when there are more', () => {
    const one = span(0, 0, 0, 20);
    const two = span(3, 0, 4, 0);
    assert.equal(multiSelectionNote([one], one, 'analysing'), null);
    assert.equal(multiSelectionNote([one, span(3, 1, 3, 1)], one, 'analysing'), null, 'the others are cursors');
    assert.equal(
      multiSelectionNote([two, one], two, 'analysing'),
      '2 selections: analysing the primary one (line 4) only. To compare two selections, run Compare Prompts… with them.',
    );
    assert.match(
      multiSelectionNote([one, two, span(9, 0, 11, 5)], one, 'completing') ?? '',
      /^3 selections: completing the primary one \(line 1\)/,
    );
    // an empty primary selection (the whole file or the text before the cursor is used): nothing to say
    assert.equal(multiSelectionNote([span(0, 0, 0, 0), two, one], span(0, 0, 0, 0), 'analysing'), null);
  });

  test('Compare Prompts: the first two selections in the file, and how many there were', () => {
    const first = span(0, 0, 0, 30);
    const second = span(1, 0, 1, 40);
    const third = span(6, 0, 8, 0);
    assert.equal(selectionPair([first]), null);
    assert.equal(selectionPair([first, span(2, 0, 2, 0)]), null);
    assert.deepEqual(selectionPair([second, first]), { a: first, b: second, of: 2 });
    assert.deepEqual(selectionPair([third, second, span(4, 1, 4, 1), first]), { a: first, b: second, of: 3 });
  });
});
