package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// bar is one column of the chart.
type bar struct {
	Label, Sub       string
	Median, Min, Max float64
	Color            color.RGBA
	Flag             bool // draw the label in red (a run failed its checks)
}

var kindColors = map[string]color.RGBA{
	"baseline":      {0x80, 0x80, 0x80, 0xff},
	"floor":         {0x5b, 0x7d, 0xa8, 0xff},
	"baseline-same": {0xb0, 0xb0, 0xb0, 0xff},
	"floor-same":    {0x9d, 0xb5, 0xd3, 0xff},
	"forwardauth":   {0xd9, 0x8b, 0x2b, 0xff},
	"tokenrevoke":   {0x3a, 0x9a, 0x5b, 0xff},
	"revoked":       {0x8e, 0x5b, 0xa8, 0xff},
}

func (r *results) drawChart(path string) error {
	var bars []bar
	for _, c := range r.Cases {
		s := r.summaryOf(c.ID)
		if s == nil {
			continue
		}
		bars = append(bars, bar{Label: c.Label, Sub: c.Detail, Median: s.RPSMedian, Min: s.RPSMin, Max: s.RPSMax,
			Color: kindColors[c.Kind], Flag: !s.AllOK})
	}
	title := fmt.Sprintf("Traefik %s, %s: req/s (median of %d runs, whiskers min-max), wrk -t%d -c%d -d%gs",
		r.Versions.Traefik, r.Date, r.Settings.Rounds, r.Settings.Threads, r.Settings.Connections, r.Settings.DurationSeconds)
	if r.quick {
		title += " [quick]"
	}
	img := renderBarChart(title, "req/s", bars)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// renderBarChart draws a simple vertical bar chart with a y axis, grid lines, the
// median above each bar and a min–max whisker through it.
func renderBarChart(title, unit string, bars []bar) *image.RGBA {
	const (
		slot    = 130 // horizontal space per bar
		barW    = 70
		top     = 50
		plotH   = 360
		left    = 80
		right   = 30
		bottomH = 60
	)
	w := left + right + slot*len(bars)
	if w < 640 {
		w = 640
	}
	h := top + plotH + bottomH
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), &image.Uniform{color.White}, image.Point{}, draw.Src)

	black := color.RGBA{0x20, 0x20, 0x20, 0xff}
	grid := color.RGBA{0xe4, 0xe4, 0xe4, 0xff}
	red := color.RGBA{0xc0, 0x20, 0x20, 0xff}

	maxV := 0.0
	for _, b := range bars {
		maxV = math.Max(maxV, math.Max(b.Max, b.Median))
	}
	step := niceStep(maxV / 5)
	if step <= 0 {
		step = 1
	}
	yMax := math.Ceil(maxV*1.08/step) * step
	y0 := top + plotH
	ypix := func(v float64) int { return y0 - int(math.Round(v/yMax*plotH)) }

	// Grid lines and y labels.
	for v := 0.0; v <= yMax+step/2; v += step {
		y := ypix(v)
		hline(img, left, w-right, y, grid)
		label := fmtInt(v)
		drawText(img, left-8-textWidth(label), y+4, label, black)
	}
	vline(img, left, top, y0, black)
	hline(img, left, w-right, y0, black)
	drawText(img, 10, top-12, unit, black)
	drawText(img, (w-textWidth(title))/2, 22, title, black)

	for i, b := range bars {
		cx := left + slot*i + slot/2
		x0, x1 := cx-barW/2, cx+barW/2
		fillRect(img, x0, ypix(b.Median), x1, y0, b.Color)
		// Whisker: vertical line min..max with caps.
		if b.Max > 0 {
			yLo, yHi := ypix(b.Min), ypix(b.Max)
			for dx := -1; dx <= 0; dx++ {
				vline(img, cx+dx, yHi, yLo, black)
			}
			hline(img, cx-10, cx+10, yHi, black)
			hline(img, cx-10, cx+10, yLo, black)
		}
		val := fmtInt(b.Median)
		vy := ypix(b.Max) - 6
		if b.Max == 0 {
			vy = ypix(b.Median) - 6
		}
		drawText(img, cx-textWidth(val)/2, vy, val, black)
		lc := black
		if b.Flag {
			lc = red
		}
		drawText(img, cx-textWidth(b.Label)/2, y0+20, b.Label, lc)
		drawText(img, cx-textWidth(b.Sub)/2, y0+36, b.Sub, lc)
	}
	return img
}

// niceStep rounds a raw step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 0
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func fillRect(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	draw.Draw(img, image.Rect(x0, y0, x1, y1), &image.Uniform{c}, image.Point{}, draw.Src)
}

func hline(img *image.RGBA, x0, x1, y int, c color.RGBA) {
	for x := x0; x <= x1; x++ {
		img.SetRGBA(x, y, c)
	}
}

func vline(img *image.RGBA, x, y0, y1 int, c color.RGBA) {
	if y0 > y1 {
		y0, y1 = y1, y0
	}
	for y := y0; y <= y1; y++ {
		img.SetRGBA(x, y, c)
	}
}

var face = basicfont.Face7x13

func textWidth(s string) int {
	return font.MeasureString(face, s).Round()
}

// drawText writes s with its baseline at y.
func drawText(img *image.RGBA, x, y int, s string, c color.RGBA) {
	d := &font.Drawer{Dst: img, Src: &image.Uniform{c}, Face: face, Dot: fixed.P(x, y)}
	d.DrawString(s)
}
