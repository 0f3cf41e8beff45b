import { SummedWarning } from '../../lib/log';

describe('SummedWarning', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('writes the first at once, then the rest summed once per period, and flushes what is left', () => {
    const written: Array<[number, number]> = [];
    const warning = new SummedWarning(1000, (a, b) => written.push([a, b]));
    warning.add(1, 10);
    expect(written).toEqual([[1, 10]]);
    for (let i = 0; i < 200; i += 1) warning.add(1, 5);
    jest.advanceTimersByTime(999);
    expect(written).toEqual([[1, 10]]);
    jest.advanceTimersByTime(1);
    expect(written).toEqual([
      [1, 10],
      [200, 1000],
    ]);
    warning.add(2, 2);
    warning.flush();
    expect(written).toEqual([
      [1, 10],
      [200, 1000],
      [2, 2],
    ]);
    jest.advanceTimersByTime(5000);
    expect(written).toHaveLength(3);
  });

  it('writes at once again after a quiet period', () => {
    const written: Array<[number, number]> = [];
    const warning = new SummedWarning(1000, (a, b) => written.push([a, b]));
    warning.add(1, 1);
    jest.advanceTimersByTime(2500);
    warning.add(3, 3);
    expect(written).toEqual([
      [1, 1],
      [3, 3],
    ]);
  });
});
