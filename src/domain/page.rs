//! Pages of lists read newest first by a sequence number: a page reads one row more than it
//! shows, and that row's existence says whether another page follows.

/// The rows of a page of `limit` read as (sequence number, row), one more than `limit` if
/// more follow, and the cursor of the next page: the sequence number of the last row shown,
/// when more follow.
pub fn cut_page<T>(mut rows: Vec<(i64, T)>, limit: u32) -> (Vec<T>, Option<i64>) {
    let limit = limit as usize;
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|(seq, _)| *seq)
    } else {
        None
    };
    (rows.into_iter().map(|(_, row)| row).collect(), next_cursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_past_the_page_gives_the_next_cursor() {
        assert_eq!(
            cut_page(vec![(9, 'a'), (7, 'b'), (4, 'c')], 2),
            (vec!['a', 'b'], Some(7))
        );
        assert_eq!(
            cut_page(vec![(9, 'a'), (7, 'b')], 2),
            (vec!['a', 'b'], None)
        );
        assert_eq!(cut_page(Vec::<(i64, char)>::new(), 2), (vec![], None));
    }
}
