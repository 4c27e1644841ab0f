package bulkimport

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// each calls fn with the number (from 1, as an editor counts) and content
// of every non-blank line of src, or only of the lines in want (ascending)
// when want is not nil. A line longer than MaxLineBytes is passed as
// tooLong, without its content. The line buffer is reused: fn must not keep b.
func (im *Importer) each(src Source, want []int, fn func(line int, b []byte, tooLong bool) error) error {
	rc, err := src.Open()
	if err != nil {
		return fmt.Errorf("open %s: %w", src.Name, err)
	}
	defer rc.Close()
	br := bufio.NewReaderSize(rc, 64<<10)
	var buf []byte
	for line := 1; want == nil || len(want) > 0; line++ {
		var tooLong bool
		buf, tooLong, err = readLine(br, buf[:0], im.o.MaxLineBytes)
		if errors.Is(err, io.EOF) && len(buf) == 0 && !tooLong {
			return nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read %s line %d: %w", src.Name, line, err)
		}
		if want != nil {
			if want[0] != line {
				continue
			}
			want = want[1:]
		}
		if b := bytes.TrimSpace(buf); len(b) > 0 || tooLong {
			if err := fn(line, b, tooLong); err != nil {
				return err
			}
		}
	}
	return nil
}

// readLine appends the next line (without its newline) to buf. Beyond max
// bytes it stops keeping the content but reads on to the end of the line.
func readLine(br *bufio.Reader, buf []byte, max int) ([]byte, bool, error) {
	tooLong := false
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(chunk) > max+1 { // +1: the newline
				tooLong, buf = true, buf[:0]
			} else {
				buf = append(buf, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimSuffix(buf, []byte{'\n'}), tooLong, err
	}
}
